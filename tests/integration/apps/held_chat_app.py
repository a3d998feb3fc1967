"""The chat example (``examples/chat``), each upgrade request held a moment in its WSGI call (``held.py``)."""

from examples.chat import app as chat
from tests.integration.apps.held import held

app = held(chat, every_upgrade=True)
