#!/usr/bin/env python
"""Django's command-line utility for the example: ``python3 examples/django_project/manage.py createsuperuser``."""

import os
import sys
from pathlib import Path


def main():
    # The repository's root, where the package ``examples`` is.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    from django.core.management import execute_from_command_line  # noqa: PLC0415

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
