"""The benchmark's child processes: start one, read the URL it prints, measure its CPU time and
peak memory from /proc, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT = 120.0  # seconds: `bot run` embeds the sample knowledge before it serves
STOP_TIMEOUT = 15.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def peak_rss_mb(self) -> float:
        """The process's resident-set high-water mark (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    name: str,
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    logs: Path,
    ready_prefix: str | None = None,
    cwd: Path | None = None,
) -> tuple[Child, str | None]:
    """Start `python args...`; with `ready_prefix`, wait for the stdout line `PREFIX=value` and
    return the value. stderr goes to `logs/<name>.log` (read it when a run goes wrong)."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    child = Child(name, process, log)
    if ready_prefix is None:
        return child, None
    deadline = time.monotonic() + READY_TIMEOUT
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(f"{ready_prefix}="):
            return child, line.strip().split("=", 1)[1]
    child.stop()
    raise RuntimeError(f"{name} did not start; see {log}")


async def wait_healthy(url: str, child: Child) -> None:
    """Poll `url` until it answers 200 (or the child dies)."""
    import aiohttp

    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited; see {child.log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{child.name} never became healthy at {url}; see {child.log}")


async def until_signalled() -> None:
    """Return on SIGINT or SIGTERM: how a benchmark process knows the runner is done with it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
