"""The thread-per-connection host: a WebSocket served in an OS thread of its own.

For servers that give each request a thread (gunicorn's gthread worker,
werkzeug's development server): the view's hooks run on an asyncio event
loop of the thread's own, which waits in ``poll`` on the client's socket
and nothing else of its own (``loop.py``); other threads wake it through
one eventfd (``wakeup.py``); the socket is read by that loop and written
from any thread (``transport.py``); the session runs in a thread started
for it, or in its request's thread where the socket cannot leave the
server (``sessions.py``). Nothing here needs gevent.
"""
