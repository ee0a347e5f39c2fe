"""Answers one question from the documents: a follow-up is first made standalone, the knowledge
base gives numbered passages, and the model streams an answer citing them; then the sources.

Without any API key the bot still helps: it shows the best passages and says how to set a key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from bot import prompts
from bot.citations import Source
from bot.errors import InputError, InvalidApiKey, ModelError
from bot.llm import LLM, Message
from bot.settings import Settings
from bot.store import Store

log = logging.getLogger(__name__)

EXCERPT_CHARS = 300  # how much of a passage a source (and the no-key answer) shows
MAX_QUERY_CHARS = 1000  # a condensed question longer than this is the model rambling


@dataclass(frozen=True)
class Turn:
    """One earlier message of the thread, oldest first in a history."""

    role: Literal["user", "assistant"]
    text: str


class Passage(Protocol):
    """What retrieval returns (bot/knowledge.py's Passage has this shape)."""

    @property
    def path(self) -> str: ...
    @property
    def heading(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def score(self) -> float: ...


class Retriever(Protocol):
    """The part of bot/knowledge.py's Knowledge that answering uses."""

    async def retrieve(
        self, query: str, *, api_key: str | None, top_k: int
    ) -> Sequence[Passage]: ...


class Answerer:
    """Turns a question (with its thread's history) into streamed text plus numbered sources."""

    def __init__(
        self, settings: Settings, knowledge: Retriever, store: Store, *, llm: LLM | None = None
    ) -> None:
        self._settings = settings
        self._knowledge = knowledge
        self._store = store
        self._own_llm = llm is None
        self._llm = llm or LLM(settings)

    async def close(self) -> None:
        if self._own_llm:
            await self._llm.close()

    async def answer(
        self, question: str, history: Sequence[Turn], workspace: str
    ) -> AsyncIterator[str | list[Source]]:
        """Yield text deltas, then exactly one list of sources; raises BotError subclasses."""
        question = question.strip()
        if not question:
            raise InputError("Ask me a question, for example: how do refunds work?")
        key = await self._api_key(workspace)
        turns = (
            list(history)[-self._settings.history_turns :] if self._settings.history_turns else []
        )
        query = await self._standalone(question, turns, key)
        passages = list(
            await self._knowledge.retrieve(query, api_key=key, top_k=self._settings.retrieval_top_k)
        )
        sources = [
            Source(n, p.path, p.heading, prompts.clip(p.text, EXCERPT_CHARS), p.score)
            for n, p in enumerate(passages, start=1)
        ]
        if not sources:
            # Nothing relevant: a fixed reply is honest, instant and free; a model shown no
            # passages could only repeat it or, worse, answer from memory.
            yield prompts.DONT_KNOW
        elif key is None:
            yield prompts.NO_KEY_INTRO + "\n\n"
            for source in sources:
                yield prompts.no_key_passage(source) + "\n\n"
            yield prompts.NO_KEY_OUTRO
        else:
            texts = [p.text for p in passages]
            messages: list[Message] = [{"role": "system", "content": prompts.ANSWER_SYSTEM}]
            messages += [_message(turn.role, turn.text) for turn in turns]
            messages.append(_message("user", prompts.answer_request(question, sources, texts)))
            async for delta in self._llm.stream(messages, api_key=key):
                yield delta
        yield sources

    async def _api_key(self, workspace: str) -> str | None:
        stored = await self._store.get_api_key(workspace)
        if stored:
            return stored
        fallback = self._settings.openai_api_key
        return fallback.get_secret_value() if fallback else None

    async def _standalone(self, question: str, turns: Sequence[Turn], key: str | None) -> str:
        """The question to retrieve with: a follow-up rewritten to stand on its own."""
        if not turns:
            return question
        last_user = next((t.text for t in reversed(turns) if t.role == "user"), "")
        fallback = f"{last_user}\n{question}" if last_user else question
        if key is None:
            return fallback
        messages: list[Message] = [
            {"role": "system", "content": prompts.CONDENSE_SYSTEM},
            _message("user", prompts.condense_request([(t.role, t.text) for t in turns], question)),
        ]
        try:
            condensed = await self._llm.complete(messages, api_key=key)
        except InvalidApiKey:
            raise  # the answer itself would fail the same way; say so now
        except ModelError as error:
            log.warning("condensing a follow-up failed (%s); using the raw question", error.detail)
            return fallback
        condensed = condensed.strip().strip('"“”').strip()
        if not condensed or len(condensed) > MAX_QUERY_CHARS:
            return fallback
        return condensed


def _message(role: Literal["user", "assistant"], content: str) -> Message:
    if role == "assistant":
        return {"role": "assistant", "content": content}
    return {"role": "user", "content": content}
