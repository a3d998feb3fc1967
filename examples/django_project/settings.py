"""Settings of the example project, trimmed from what ``django-admin startproject`` writes.

Two environment variables change them: ``CHAT_SQLITE_PATH`` (where the
SQLite database is; ``db.sqlite3`` in this directory by default) and
``DJANGO_SECRET_KEY``.
"""

import os
from pathlib import Path

# examples/django_project
BASE_DIR = Path(__file__).resolve().parent

# An example's key, public in the repository: set DJANGO_SECRET_KEY anywhere
# but on your own machine.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only-5f&j&b^)3+&it+ed%j)pubjrv")

DEBUG = False

# The Host header of pages and WebSocket upgrades must name one of these.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# Browser pages of other origins that may open the WebSocket too (besides
# this site's own pages).
CSRF_TRUSTED_ORIGINS: list[str] = []

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "examples.django_project.chat",
]

# For an upgrade, only the session and authentication middleware run: they
# give the WebSocket view request.session and request.user.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "examples.django_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

WSGI_APPLICATION = "examples.django_project.wsgi.application"

# Created, and migrated, when the application starts (wsgi.py).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": Path(os.environ.get("CHAT_SQLITE_PATH", BASE_DIR / "db.sqlite3")),
        # Seconds a write waits for another worker's.
        "OPTIONS": {"timeout": 20},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
