"""What adapters may use of the core, as protocols: the real `bot.core.Core` satisfies them, and
adapter tests can hand in small fakes. Adapters type against these, never against `Core`, so
importing an adapter does not import the knowledge index or the model client."""

from __future__ import annotations

from typing import Protocol

from bot.settings import Settings
from bot.store import Store
from bot.surface import Surface


class Answering(Protocol):
    """`bot.conversation.Conversations`, the one core call a platform event becomes."""

    async def reply(
        self,
        *,
        surface: Surface,
        thread_key: str,
        workspace: str,
        question: str,
        author: str | None = None,
        event_id: str | None = None,
    ) -> object: ...


class KeyAdministration(Protocol):
    """`bot.keys.KeyAdmin`: what /setkey and the web settings form call."""

    async def set(self, workspace: str, key: str, *, by: str | None) -> str: ...

    async def clear(self, workspace: str) -> bool: ...

    async def status(self, workspace: str) -> str | None: ...


class CoreView(Protocol):
    """The core `bot run` hands every adapter."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def conversations(self) -> Answering: ...

    @property
    def keys(self) -> KeyAdministration: ...
