"""Django projects on WSGI: Django's own handler for HTTP, our WebSocket views beside it.

``wsgi_application`` goes in a project's ``wsgi.py`` in place of Django's
``get_wsgi_application``. WebSocket routes come from ``websocket_urlpatterns``
in the ``ROOT_URLCONF`` module; a view's ``self.request`` is Django's
request for the upgrade, with ``session`` and ``user``; the handshake
follows ``ALLOWED_HOSTS`` and ``CSRF_TRUSTED_ORIGINS``; and each hook runs
the way Django runs a request for its database connections
(``database.py``). docs/django.md has the steps.
"""

from .application import DjangoWebSocketMiddleware, wsgi_application

__all__ = ["DjangoWebSocketMiddleware", "wsgi_application"]
