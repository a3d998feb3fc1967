"""A real PostgreSQL server for the tests, on 127.0.0.1 and a free port, started and stopped by its process id.

Debian's ``postgresql`` package keeps its programs in
``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses to run as root:
as root, the cluster belongs to the ``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def find_program(name: str) -> str | None:
    """``name`` on the PATH, or in the newest of Debian's PostgreSQL directories."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(path.split("/")[4]))
    return candidates[-1] if candidates else None


class PostgresService:
    """A throwaway cluster with trust authentication for ``postgres`` on 127.0.0.1, and one database ``site``."""

    def __init__(self) -> None:
        initdb, postgres = find_program("initdb"), find_program("postgres")
        assert initdb and postgres, "PostgreSQL is missing: tests/setup.sh installs it (Debian package postgresql)"
        self.initdb, self.postgres = initdb, postgres
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = Path(tempfile.mkdtemp(prefix="postgres-"))
        self.data = self.directory / "data"
        self.process: subprocess.Popen[bytes] | None = None
        # The programs run as the cluster's owner: ``subprocess``'s user and group.
        self._owner: dict[str, int] = {}
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._owner = {"user": owner.pw_uid, "group": owner.pw_gid}

    def start(self, timeout: float = 30) -> None:
        subprocess.run(
            [self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
            **self._owner,  # type: ignore[arg-type]
            timeout=60,
        )
        command = [
            self.postgres, "-D", str(self.data), "-p", str(self.port), "-k", str(self.directory),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=400",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            **self._owner,  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect("postgres") as connection:
                    connection.execute("CREATE DATABASE site")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"postgres did not start on port {self.port}") from None
                time.sleep(0.1)

    def connect(self, database: str) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True, connect_timeout=5
        )

    def connections_to(self, database: str) -> int:
        """The backends connected to ``database`` now (ours is to another database)."""
        with self.connect("postgres") as connection:
            row = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()
        assert row is not None
        return int(row[0])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
