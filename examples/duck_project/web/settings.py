"""Settings of the example Duck project, trimmed from what ``duck makeproject`` writes.

Duck fills in every setting not named here with its defaults.
"""

import os
import pathlib

from duck.etc.middlewares import middlewares
from duck.etc.normalizers import normalizers
from duck.secrets import DUCK_SECRET
from duck.storage import BaseDir

# The project's directory, examples/duck_project.
BASE_DIR: str | pathlib.Path = BaseDir()

SECRET_KEY: str = os.environ.get("DUCK_SECRET_KEY", DUCK_SECRET)

# Off: no reloader, no dashboard, no default Duck views.
DEBUG: bool = False

# The Host header must name one of these (Duck's host middleware answers 400
# otherwise, for WebSocket upgrades too).
ALLOWED_HOSTS: list[str] = ["127.0.0.1", "localhost"]

# Browser pages of other origins that may open the WebSockets too (besides
# this site's own pages), for instance a separate front end.
CSRF_TRUSTED_ORIGINS: list[str] = ["https://chat.example.com"]

URLPATTERNS_MODULE: str = "examples.duck_project.web.urls"

MIDDLEWARES: list[str] = middlewares
NORMALIZERS: list[str] = normalizers

# Nothing here serves static or media files, runs in the background, or
# talks to Django.
BLUEPRINTS: list[str] = []
RUN_AUTOMATIONS: bool = False
ENABLE_COMPONENT_SYSTEM: bool = False
USE_DJANGO: bool = False
DJANGO_SETTINGS_MODULE: str = "examples.duck_project.web.django_settings"

# Logs go to the WSGI server's output, not to files in the project.
LOG_TO_FILE: bool = False
