"""What `/setkey` does: check a workspace's API key with the endpoint, then store it encrypted.

A key is stored only after the endpoint accepted it (GET /models), so a typo never replaces a
working key. Only its last four characters are ever shown or logged, and the key is registered
with the log filter (`bot.logs`) the moment it arrives.
"""

from __future__ import annotations

import logging

from bot.errors import InputError
from bot.llm import check_key
from bot.logs import register_secret
from bot.settings import Settings
from bot.store import Store
from bot.vault import last4

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 512  # real keys are under 200 characters; longer is a pasted paragraph

EMPTY = "Paste the API key after the command, like `/setkey sk-...`."
HAS_SPACES = "That doesn't look like an API key: it contains spaces. Paste only the key."
BAD_CHARACTERS = (
    "That doesn't look like an API key: it contains characters a key can't have. "
    "Paste only the key, without formatting."
)
TOO_LONG = f"That doesn't look like an API key: it is longer than {MAX_KEY_LENGTH} characters."


class KeyAdmin:
    """Sets, clears and reports the API key of a workspace."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store

    async def set(self, workspace: str, key: str, *, by: str | None) -> str:
        """Validate and store `key` for `workspace`; returns its last four characters.

        Raises InputError (garbled input), InvalidApiKey (the endpoint rejected it),
        ModelUnavailable (the endpoint can't be reached) or another ModelError.
        """
        key = clean_key(key)
        # Masked in every log line from here on, before the endpoint (or its errors) sees it; a
        # key the endpoint rejects stays masked too: it may be a near-miss of a real one.
        register_secret(key)
        models = await check_key(self._settings, key)
        await self._store.set_api_key(workspace, key, set_by=by)
        if models and self._settings.chat_model not in models:
            # Some endpoints list only part of what they serve, so this is a hint, not a refusal.
            log.warning(
                "the endpoint doesn't list CHAT_MODEL %r for the key of %s",
                self._settings.chat_model,
                workspace,
            )
        log.info("API key ending %s set for %s by %s", last4(key), workspace, by)
        return last4(key)

    async def clear(self, workspace: str) -> bool:
        """Forget the workspace's key; False if it had none."""
        removed = await self._store.delete_api_key(workspace)
        if removed:
            log.info("API key cleared for %s", workspace)
        return removed

    async def clear_within(self, workspace: str) -> int:
        """Forget the keys of `workspace` and of every workspace inside it (an Enterprise Grid
        org's, when the app is uninstalled from the whole org); returns how many there were."""
        removed = await self._store.delete_api_keys_within(workspace)
        log.info("API keys cleared for %s and the workspaces inside it: %d", workspace, removed)
        return removed

    async def status(self, workspace: str) -> str | None:
        """The last four characters of the workspace's key, or None when it has none."""
        key = await self._store.get_api_key(workspace)
        return last4(key) if key else None


def clean_key(raw: str) -> str:
    """The key with surrounding whitespace removed; InputError if it can't be a key."""
    key = raw.strip()
    if not key:
        raise InputError(EMPTY)
    if len(key) > MAX_KEY_LENGTH:
        raise InputError(TOO_LONG)
    if any(char.isspace() for char in key):
        raise InputError(HAS_SPACES)
    # Keys travel in an HTTP header: printable ASCII only.
    if not (key.isascii() and key.isprintable()):
        raise InputError(BAD_CHARACTERS)
    return key
