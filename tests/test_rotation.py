"""`bot rotate-key`: every stored secret is re-sealed under the new master secret (so it opens
with the new one and not with the old), as a real process; a crash at any step leaves a state
that opens, and the next run finishes the rotation."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot import rotation
from bot.core import open_store
from bot.errors import ConfigError
from bot.rotation import rotate_key
from bot.settings import Settings
from bot.store import Store
from bot.vault import NEXT_SECRET_FILE_NAME, SECRET_FILE_NAME, Vault, load_master_key
from tests.test_vault import seal_like_the_first_release

TIMEOUT = 60  # seconds for one `bot rotate-key`
KEYS = {
    "slack:T1": "sk-slack-team-one-0001",
    "discord:99": "gsk_discordGuildKey0000000002",
    "web:local": "sk-first-release-0003",  # stored by the first release, in its format
}
INSTALLATION = '{"bot_token": "xoxb-1-2-installationtoken"}'
OLD_ENV_SECRET = "the operator's old secret"
NEW_ENV_SECRET = "the operator's new secret"


class Crash(Exception):
    """The process dying at that point (a real kill stops everything after it the same way)."""


@dataclass
class Run:
    code: int
    out: str
    err: str


def settings_for(data_dir: Path, secret_key: str | None = None) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        secret_key=SecretStr(secret_key) if secret_key else None,
    )


async def seed(data_dir: Path, secret_key: str | None = None) -> bytes:
    """A database with keys and an installation, one key in the first release's format."""
    store = await open_store(settings_for(data_dir, secret_key))
    try:
        await store.set_api_key("slack:T1", KEYS["slack:T1"])
        await store.set_api_key("discord:99", KEYS["discord:99"])
        await store.save_slack_installation("slack:T1", INSTALLATION)
    finally:
        await store.close()
    secret = load_master_key(secret_key, data_dir)
    with sqlite3.connect(data_dir / "bot.db") as db:
        sealed = seal_like_the_first_release(secret, KEYS["web:local"], "web:local")
        db.execute(
            "INSERT INTO api_keys (workspace, ciphertext) VALUES (?, ?)", ("web:local", sealed)
        )
    db.close()
    return secret


async def stored(data_dir: Path, *secrets: bytes) -> dict[str, str | None]:
    """Every stored secret, opened with exactly these master secrets (ConfigError if one can't)."""
    store = await Store.open(data_dir / "bot.db", Vault(*secrets))
    try:
        found = {workspace: await store.get_api_key(workspace) for workspace in KEYS}
        found["installation"] = await store.get_slack_installation("slack:T1")
        return found
    finally:
        await store.close()


EXPECTED = {**KEYS, "installation": INSTALLATION}


def versions(data_dir: Path) -> set[bytes]:
    with sqlite3.connect(data_dir / "bot.db") as db:
        rows = db.execute(
            "SELECT ciphertext FROM api_keys UNION ALL SELECT ciphertext FROM slack_installations"
        ).fetchall()
    db.close()
    return {bytes(row[0])[:1] for row in rows}


async def rotate_in_a_process(data_dir: Path, **env: str) -> Run:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "rotate-key",
        cwd=data_dir.parent,  # no .env there: only these settings
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(data_dir.parent),
            "DATA_DIR": str(data_dir),
            "LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def test_rotate_key_replaces_the_generated_secret_and_reseals_everything(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    old = await seed(data)
    run = await rotate_in_a_process(data)
    assert run.code == 0, run.err
    assert "re-sealed 4 stored secrets" in run.out
    new = load_master_key(None, data)
    assert new != old
    assert sorted(p.name for p in data.iterdir() if "secret" in p.name) == [SECRET_FILE_NAME]
    assert await stored(data, new) == EXPECTED
    with pytest.raises(ConfigError):
        await stored(data, old)
    assert versions(data) == {b"\x02"}  # the first release's value is in today's format now
    for secret in (old, new):
        assert secret.decode() not in run.out + run.err


async def test_with_secret_key_set_the_new_secret_comes_from_new_secret_key(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    old = await seed(data, OLD_ENV_SECRET)
    refused = await rotate_in_a_process(data, SECRET_KEY=OLD_ENV_SECRET)
    assert refused.code == 1
    assert "NEW_SECRET_KEY" in refused.err
    assert await stored(data, old) == EXPECTED  # nothing changed

    run = await rotate_in_a_process(data, SECRET_KEY=OLD_ENV_SECRET, NEW_SECRET_KEY=NEW_ENV_SECRET)
    assert run.code == 0, run.err
    assert "set SECRET_KEY to the value of NEW_SECRET_KEY" in run.out
    assert await stored(data, NEW_ENV_SECRET.encode()) == EXPECTED
    with pytest.raises(ConfigError):
        await stored(data, old)
    assert NEW_ENV_SECRET not in run.out + run.err and OLD_ENV_SECRET not in run.out + run.err
    assert not (data / SECRET_FILE_NAME).exists()  # SECRET_KEY was set all along


async def test_a_crash_after_the_commit_still_opens_and_the_next_run_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    old = await seed(data)
    settings = settings_for(data)

    def crash(path: Path, content: bytes) -> None:
        raise Crash  # killed between the database commit and replacing the file

    monkeypatch.setattr(rotation, "replace_private", crash)
    with pytest.raises(Crash):
        await rotate_key(settings, None)
    monkeypatch.undo()
    assert load_master_key(None, data) == old
    pending = (data / NEXT_SECRET_FILE_NAME).read_bytes().strip()

    # The bot starts meanwhile: everything opens, and a key set now is kept too.
    store = await open_store(settings)
    assert await store.get_api_key("slack:T1") == KEYS["slack:T1"]
    await store.set_api_key("discord:99", KEYS["discord:99"])
    await store.close()

    done = await rotate_key(settings, None)
    assert done.resealed == 4
    assert load_master_key(None, data) == pending  # the interrupted rotation's secret
    assert not (data / NEXT_SECRET_FILE_NAME).exists()
    assert await stored(data, pending) == EXPECTED
    with pytest.raises(ConfigError):
        await stored(data, old)


async def test_a_crash_before_the_commit_leaves_everything_under_the_old_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    old = await seed(data)
    settings = settings_for(data)
    sealed_so_far = 0
    real_encrypt = Vault.encrypt

    def encrypt_then_crash(self: Vault, *args: object, **kwargs: object) -> bytes:
        nonlocal sealed_so_far
        sealed_so_far += 1
        if sealed_so_far == 3:
            raise Crash  # killed halfway through the re-sealing
        return real_encrypt(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Vault, "encrypt", encrypt_then_crash)
    with pytest.raises(Crash):
        await rotate_key(settings, None)
    monkeypatch.undo()
    assert await stored(data, old) == EXPECTED  # the transaction rolled back whole
    store = await open_store(settings)  # and the bot starts
    assert await store.get_slack_installation("slack:T1") == INSTALLATION
    await store.close()

    await rotate_key(settings, None)
    assert await stored(data, load_master_key(None, data)) == EXPECTED
    with pytest.raises(ConfigError):
        await stored(data, old)


async def test_new_secret_key_equal_to_the_current_one_is_refused(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data", OLD_ENV_SECRET)
    with pytest.raises(ConfigError, match="in use"):
        await rotate_key(settings, OLD_ENV_SECRET)
