"""The hosts: what serves WebSocket connections in some kind of concurrency.

``base.py`` is the contract between a host and the engine; ``gevent/`` (a
greenlet per connection) and ``threads/`` (a thread per connection) are the
two hosts, with modules of the same names (``loop.py``, ``transport.py``,
``sessions.py``); ``takeover.py`` finds the client's socket in each WSGI
server, and ``choice.py`` the host for what it found. Nothing is imported
here: ``duck_ws_sync.hosts.threads`` loads without gevent.
"""
