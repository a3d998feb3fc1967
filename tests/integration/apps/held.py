"""Upgrade requests held for a moment inside their WSGI call, so that connections made at once spread over the workers.

A gevent worker blocks whole while it holds one (the original
``time.sleep``). A gthread worker counts the connection among its
``--worker-connections`` until the call ends, and stops accepting at that
number. Either way the other workers take the connections made meanwhile.
"""

from gevent import monkey

_sleep = monkey.get_original("time", "sleep")


def held(app, every_upgrade=False):
    """``app``, holding each upgrade request whose query has ``hold`` (``every_upgrade``: each upgrade request)."""

    def holding(environ, start_response):
        if every_upgrade and environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            hold = True
        else:
            hold = "hold" in environ.get("QUERY_STRING", "").split("&")
        if hold:
            _sleep(0.3 if environ.get("wsgi.multithread") else 0.05)
        return app(environ, start_response)

    return holding
