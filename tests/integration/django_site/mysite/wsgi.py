import os

from duck_ws_sync.django import wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = wsgi_application()
