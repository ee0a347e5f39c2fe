"""`bot run` as an operator starts it: a real process, here one whose PORT is already taken."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from tests.fakes.openai import FAKE_KEY, FakeOpenAI

TIMEOUT = 120  # seconds for `bot run` to start (it opens the index) and give up on the port
WEB_PASSWORD = "correct-horse-battery-staple-41"
SECRET_KEY = "a-master-secret-that-never-prints-0123456789"


async def test_bot_run_on_a_taken_port_says_so_in_one_line_and_exits_non_zero(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    (knowledge / "relay.md").write_text("# Relay\n\nThe relay listens on port 7443.\n")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "DATA_DIR": str(tmp_path / "data"),
            "KNOWLEDGE_DIR": str(knowledge),
            "OPENAI_BASE_URL": fake_openai.base_url,
            "OPENAI_API_KEY": FAKE_KEY,
            "SECRET_KEY": SECRET_KEY,
            "WEB_PASSWORD": WEB_PASSWORD,
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,  # no .env there: only these settings
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    output = out.decode() + err.decode()
    assert process.returncode == 1, output
    assert err.decode().strip().splitlines()[-1] == (
        f"bot: port {port} on 127.0.0.1 is already in use; "
        "set PORT to another port or stop the other process"
    )
    assert "Traceback" not in output
    for secret in (FAKE_KEY, WEB_PASSWORD, SECRET_KEY):
        assert secret not in output
