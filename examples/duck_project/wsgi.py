"""The project's WSGI entry point: ``gunicorn -k gevent examples.duck_project.wsgi:app``.

Duck's HTTP views (``/``, ``/api/ping``) answer through Duck; the WebSocket
views of ``web/urls.py`` through duck_ws_sync.
"""

from duck_ws_sync.duck import wsgi_application

app = wsgi_application("examples.duck_project.web.settings")
