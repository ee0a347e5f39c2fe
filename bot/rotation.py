"""`bot rotate-key`: re-seal every stored secret under a new master secret, then retire the old.

Two cases, by where the master secret lives:
- `DATA_DIR/secret.key` (SECRET_KEY unset): a new secret is written to `secret.key.next`, every
  sealed value is re-sealed under it in one database transaction, and only then does it replace
  `secret.key` (atomically). Until that last step values open under either file
  (`bot.vault.load_secrets`), so a crash anywhere leaves a bot that starts, and a rotation that
  the next `bot rotate-key` finishes.
- a secret the operator holds: NEW_SECRET_KEY, read from the environment only (a flag would show
  in `ps` and in shell history), is the new secret. Values are re-sealed under it in one
  transaction, opening under SECRET_KEY or NEW_SECRET_KEY (so a second run after a crash finds
  them either way); the operator then sets SECRET_KEY to it and restarts the bot.

The bot must be stopped meanwhile: a running bot keeps the old secret in memory, and a key it
stores during the rotation would be sealed under the secret that is being retired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.core import open_store
from bot.errors import ConfigError
from bot.logs import register_secret
from bot.private_files import create_private, remove_file, replace_private
from bot.settings import Settings
from bot.vault import (
    NEXT_SECRET_FILE_NAME,
    SECRET_FILE_NAME,
    Vault,
    load_secrets,
    new_secret,
    read_secret,
    require_shared_secret,
)

NEW_SECRET_ENV = "NEW_SECRET_KEY"  # noqa: S105 - a variable name, not a secret


@dataclass(frozen=True)
class Rotation:
    resealed: int  # sealed values now under the new secret
    next_step: str  # what the operator does now, in one sentence


async def rotate_key(settings: Settings, new_secret_key: str | None) -> Rotation:
    """Re-seal everything under a new master secret; ConfigError if nothing could be done."""
    require_shared_secret(settings)  # before any file is made in DATA_DIR
    current = settings.secret_key.get_secret_value() if settings.secret_key else None
    if new_secret_key is not None:
        return await _rotate_to(settings, current, new_secret_key)
    if current is not None:
        raise ConfigError(
            f"SECRET_KEY is set, so the new secret has to come from you: put it in "
            f"{NEW_SECRET_ENV} (in the environment) and run `bot rotate-key` again"
        )
    data_dir = settings.data_dir
    opening = load_secrets(None, data_dir)
    target = _next_secret(data_dir, opening[0])
    resealed = await _reseal(settings, [*opening, target], target)
    # The database is committed under `target`; from here on only the files change, each step
    # atomic, and load_secrets opens everything after a crash between them.
    replace_private(data_dir / SECRET_FILE_NAME, target + b"\n")
    remove_file(data_dir / NEXT_SECRET_FILE_NAME)
    return Rotation(resealed, f"{data_dir / SECRET_FILE_NAME} holds the new secret; start the bot")


async def _rotate_to(settings: Settings, current: str | None, new: str) -> Rotation:
    if not new.strip():
        raise ConfigError(f"{NEW_SECRET_ENV} is empty")
    if new == current:
        raise ConfigError(f"{NEW_SECRET_ENV} is the SECRET_KEY in use: choose a new secret")
    register_secret(new)
    target = new.encode()
    resealed = await _reseal(settings, [*load_secrets(current, settings.data_dir), target], target)
    step = f"set SECRET_KEY to the value of {NEW_SECRET_ENV} and start the bot"
    if current is None:
        step += f" ({SECRET_FILE_NAME} in DATA_DIR is no longer used: remove it)"
    return Rotation(resealed, step)


def _next_secret(data_dir: Path, current: bytes) -> bytes:
    pending = data_dir / NEXT_SECRET_FILE_NAME
    if pending.exists():
        found = read_secret(pending)
        if found != current:
            # An earlier run stopped part-way: values may already be sealed under it, so it is
            # the one to finish with (it is still new: the bot never sealed under it alone).
            return found
        # The earlier run stopped after replacing secret.key: nothing is left to finish.
        remove_file(pending)
    # Two rotations started at once both end up with the one file that was linked first.
    create_private(pending, new_secret())
    return read_secret(pending)


async def _reseal(settings: Settings, opening: list[bytes], target: bytes) -> int:
    store = await open_store(settings, Vault(*opening))
    try:
        return await store.reseal(Vault(target))
    finally:
        await store.close()
