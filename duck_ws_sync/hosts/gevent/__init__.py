"""The gevent host: each WebSocket served in a greenlet of its own.

For gunicorn's gevent worker, gevent.pywsgi and werkzeug under gevent: the
view's hooks run on an asyncio event loop that lives in the connection's
greenlet (``loop.py``), whose greenlet also reads the socket while it is
idle (``transport.py``); the deadlines of every connection of a thread
share one gevent timer (``timers.py``); the session outlives the WSGI call
(``sessions.py``).
"""
