"""The project's WSGI entry point: ``gunicorn -k gevent -b 127.0.0.1:8000 examples.django_project.wsgi:application``.

Django serves the pages, duck_ws_sync the WebSocket route of ``urls.py``.
Each worker runs ``migrate`` as it starts, one worker at a time (a lock
on ``<database>.lock``): the first start creates the SQLite database, a
later one applies new migrations, the others find nothing to do.
"""

import fcntl
import os
import sys
from pathlib import Path

from duck_ws_sync.django import wsgi_application
from examples.logs import log_connections


def migrate() -> None:
    """Create the database or bring it up to date, holding the lock file next to it."""
    from django.conf import settings  # noqa: PLC0415 (once Django is set up)
    from django.core.management import call_command  # noqa: PLC0415
    from django.db import connections  # noqa: PLC0415

    database = Path(settings.DATABASES["default"]["NAME"])
    with open(f"{database}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        created = not database.exists()
        call_command("migrate", interactive=False, verbosity=0)
        connections.close_all()
    if created:
        print(f"Created the database {database}", file=sys.stderr, flush=True)


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
log_connections()
application = wsgi_application()
migrate()
