"""Duck projects on a WSGI server: Duck's HTTP views and our WebSocket views in one application.

In a Duck project's WSGI entry point::

    from duck_ws_sync.duck import wsgi_application

    app = wsgi_application("web.settings")

and ``gunicorn -k gevent wsgi:app`` serves the project. Routes stay where
Duck keeps them, in the module its ``URLPATTERNS_MODULE`` setting names,
written with ``duck.urls.path`` and ``re_path``: a route whose view is a
``duck_ws_sync.WebSocketView`` is served by duck_ws_sync, every other one
by Duck, through its own request and response machinery and middlewares.
A WebSocket view's ``self.request`` is Duck's ``HttpRequest``.

Needs the ``duck`` extra (``pip install 'duck-ws-sync[duck]'``); the rest of
duck_ws_sync never imports Duck. docs/duck.md has the steps for an existing
project.
"""

from .application import DuckWebSocketMiddleware, wsgi_application
from .http import duck_request, serve_http

__all__ = ["DuckWebSocketMiddleware", "duck_request", "serve_http", "wsgi_application"]
