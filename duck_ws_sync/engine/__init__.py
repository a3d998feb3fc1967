"""The engine: one WebSocket connection's life, the same under every host.

``session.py`` is the connection (``Session``: its protocol core, inbox,
deadlines, rate limit, outbox and groups; the message path), with its
deadlines in ``clock.py``, its messages' way to the view in ``inbox.py`` and
its rate limit in ``ratelimit.py``; ``lifecycle.py`` runs a session from
its first read to its ``on_close``; ``registry.py`` is the one registry of
live sessions and their counts; ``groups.py`` and ``outbox.py`` are groups
and broadcasts within the process; ``accesslog.py`` writes each
connection's line. The engine knows its hosts only by the contract of
``hosts/base.py`` and imports nothing above it.
"""
