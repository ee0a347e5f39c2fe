"""A real Redis server for the tests: Debian's redis-server (installed by the README's test
command, scripts/install-redis.sh) in a temporary directory, on a free loopback port, with
nothing saved to disk.

Use it through the fixtures in tests/conftest.py:
- `redis_server`: the session's one server (started the first time a test asks for it);
- `redis_url`: a fresh, empty database on it for each test, as a `redis://` URL.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

REDIS_SERVER = "redis-server"
# Enough numbered databases for one per test of a session (Redis's default is 16).
DATABASES = 10_000
START_TIMEOUT = 30.0  # seconds for the server to answer PING


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    _databases: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def start(cls) -> RedisServer:
        binary = shutil.which(REDIS_SERVER) or shutil.which(REDIS_SERVER, path="/usr/bin")
        if binary is None:
            raise RuntimeError(
                "redis-server is missing: install it with `bash scripts/install-redis.sh` "
                "(apt-get install redis-server), which `make test` runs"
            )
        root = Path(tempfile.mkdtemp(prefix="answerbot-redis-"))
        port = _free_port()
        command = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(root),
            "--save", "",
            "--appendonly", "no",
            "--databases", str(DATABASES),
            "--logfile", str(root / "server.log"),
        ]  # fmt: skip
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        server = cls(root, port, process)
        server._wait_until_up()
        return server

    def _wait_until_up(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.root / "server.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"redis-server exited at start:\n{log}")
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("redis-server did not answer PING in time") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def fresh_url(self) -> str:
        """A database no test of this session has used yet."""
        return self.url(next(self._databases))
