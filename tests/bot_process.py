"""`bot run` as a real child process for the tests that stop it the hard way (kill -9) or the
operator's way (SIGTERM), or run several: started with only the settings given, healthy when
/healthz answers; and one-shot commands (`bot ingest`) with the same environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

START_TIMEOUT = 180.0  # `bot run` loads the embedding model and indexes before it serves


@dataclass
class BotProcess:
    process: asyncio.subprocess.Process
    url: str
    log: Path

    async def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit status (the test fails if it takes longer than `timeout`)."""
        self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def bot_run(workdir: Path, settings: dict[str, str]) -> AsyncIterator[BotProcess]:
    """`python -m bot run` in `workdir` (no .env there) with `settings` as its environment,
    DATA_DIR and KNOWLEDGE_DIR under `workdir`, on a free loopback port."""
    port = free_port()
    env = environment(workdir, {"PORT": str(port), **settings})
    log = workdir / f"bot-{port}.log"
    with log.open("w") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=workdir, env=env,
            stdout=output, stderr=output,
        )  # fmt: skip
    child = BotProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        await _healthy(child)
        yield child
    finally:
        if process.returncode is None:
            await child.kill()


def bot_command(workdir: Path, settings: dict[str, str], *args: str) -> str:
    """`python -m bot <args>` run to its end as `bot_run` would start it; its output (the test
    fails, showing it, if the command does). It blocks: for fixtures, before any bot runs."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=workdir, env=environment(workdir, settings),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=START_TIMEOUT,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"bot {' '.join(args)} exited {done.returncode}:\n{done.stdout}")
    return done.stdout


def environment(workdir: Path, settings: dict[str, str]) -> dict[str, str]:
    """Only `settings`, with DATA_DIR and KNOWLEDGE_DIR under `workdir` unless they say else."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "DATA_DIR": str(workdir / "data"),
        "KNOWLEDGE_DIR": str(workdir / "knowledge"),
        "LOG_LEVEL": "INFO",
        **settings,
    }


async def _healthy(child: BotProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(START_TIMEOUT / 0.25)):
            if child.process.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{child.url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.25)
    pytest.fail(f"bot run did not become healthy:\n{child.log.read_text()}")
