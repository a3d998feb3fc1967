"""Django's settings for Duck's set-up, which loads Django even when no request goes to it (``USE_DJANGO`` off).

Duck's project tooling writes a whole Django project under
``web/backend/django``; this project sends nothing to Django, so these few
lines stand for it.
"""

from duck.settings import SETTINGS as DUCK_SETTINGS

SECRET_KEY = DUCK_SETTINGS["SECRET_KEY"]
DEBUG = False
INSTALLED_APPS: list[str] = []
USE_TZ = True
# Django sets the process's TZ from this (its own default is America/Chicago).
TIME_ZONE = "UTC"
