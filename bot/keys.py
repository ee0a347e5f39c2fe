"""Which key answers a workspace, and what `/setkey` does: check a workspace's API key with the
endpoint, then store it encrypted.

`KeyPolicy` is the one place the operator's OPENAI_API_KEY is lent to a workspace without its
own key, as FALLBACK_KEY_SCOPE allows: the answerer asks it for every question, and `/setkey`
status reports what it decided, on every platform. A key is stored only after the endpoint
accepted it (GET /models), so a typo never replaces a working key. Only the last four characters
of a workspace's key are ever shown or logged (of the operator's, none), and a key is registered
with the log filter (`bot.logs`) the moment it arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

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


# Whose key writes a workspace's answers: its own, the operator's, or none (passages only).
Source = Literal["own", "operator", "none"]


@dataclass(frozen=True)
class Keys:
    """The keys one question of a workspace is answered with (never shown in a repr)."""

    chat: str | None = field(repr=False)  # writes the answer; None: quoted passages only
    embed: str | None = field(repr=False)  # embeds the question (EMBED_PROVIDER=openai)
    source: Source
    last4: str | None = None  # of the workspace's own key; the operator's is never shown


@dataclass(frozen=True)
class KeyStatus:
    """What `/setkey` status tells a workspace: which key answers it."""

    source: Source
    last4: str | None = None

    def sentence(self, place: str = "workspace") -> str:
        """One sentence for chat, `place` naming the platform's word (workspace, server); the
        adapter adds how to set a key there."""
        if self.source == "own":
            return f"Answers here are written with this {place}'s key ending …{self.last4}."
        if self.source == "operator":
            return (
                f"No API key is set for this {place}: answers are written with the operator's "
                "shared key."
            )
        return (
            f"No API key is set for this {place}, and no key answers here: answers are quoted "
            "passages only."
        )


class KeyPolicy:
    """Resolves a workspace's keys: its own key for everything; else the operator's key as
    FALLBACK_KEY_SCOPE allows (all, only embeddings, or only FALLBACK_KEY_WORKSPACES)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store

    async def keys(self, workspace: str) -> Keys:
        own = await self._store.get_api_key(workspace)
        if own:
            return Keys(chat=own, embed=own, source="own", last4=last4(own))
        fallback = self._settings.openai_api_key
        if fallback is None:
            return Keys(chat=None, embed=None, source="none")
        operator = fallback.get_secret_value()
        scope = self._settings.fallback_key_scope
        if scope == "all" or (
            scope == "listed" and listed(workspace, self._settings.fallback_key_workspaces)
        ):
            return Keys(chat=operator, embed=operator, source="operator")
        if scope == "embeddings":
            return Keys(chat=None, embed=operator, source="none")
        return Keys(chat=None, embed=None, source="none")


def listed(workspace: str, entries: Iterable[str]) -> bool:
    """Whether FALLBACK_KEY_WORKSPACES names `workspace`: exactly, as its Enterprise Grid org
    (slack:E1 covers slack:E1:T2), or by its team alone (slack:T2 names slack:E1:T2 too)."""
    names = {workspace}
    parts = workspace.split(":")
    if parts[0] == "slack" and len(parts) == 3:
        names |= {f"slack:{parts[1]}", f"slack:{parts[2]}"}
    return not names.isdisjoint(entries)


class KeyAdmin:
    """Sets, clears and reports the API key of a workspace."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._policy = KeyPolicy(settings, store)

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

    async def status(self, workspace: str) -> KeyStatus:
        """Which key writes the workspace's answers, as the answerer resolves it."""
        keys = await self._policy.keys(workspace)
        return KeyStatus(keys.source, keys.last4)


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
