"""Answers one question from the documents: a follow-up is first made standalone, the knowledge
base gives numbered passages, and the model streams an answer citing them; then the sources it
cited.

With a key, every question reaches the model with the best passages found: the model, not a
cutoff, decides that they don't answer it. Without any key the bot still helps: it shows the best
passages when its calibrated judgement (`Retrieval.relevant`) says they cover the question, and
declines otherwise; either way it says how to set a key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from bot import prompts
from bot.citations import Source
from bot.errors import InputError, InvalidApiKey, ModelError
from bot.keys import KeyPolicy
from bot.llm import LLM, Message
from bot.metrics import Metrics
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
    """What retrieval returns (bot.knowledge's Passage has this shape)."""

    @property
    def path(self) -> str: ...
    @property
    def heading(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def score(self) -> float: ...


class Retrieval(Protocol):
    """The passages found for a question, and whether the bot alone would call them relevant."""

    @property
    def passages(self) -> Sequence[Passage]: ...
    @property
    def relevant(self) -> bool: ...


class Retriever(Protocol):
    """The part of bot.knowledge's Knowledge that answering uses."""

    async def retrieve(self, query: str, *, api_key: str | None, top_k: int) -> Retrieval:
        """`api_key` embeds the query (EMBED_PROVIDER=openai); None: keyword search alone."""
        ...


class Answer:
    """One answer as it is written: `async for delta in answer` streams its text, and once that
    ends `answer.sources` are the sources the text cites (as simonw/llm's AsyncResponse)."""

    def __init__(self, items: AsyncIterator[str | list[Source]]) -> None:
        self._items = items
        self._text: list[str] = []
        self._sources: list[Source] | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        async for item in self._items:
            if isinstance(item, str):
                self._text.append(item)
                yield item
            else:
                self._sources = item

    @property
    def text(self) -> str:
        """What has been written so far (all of it, once the iteration ended)."""
        return "".join(self._text)

    @property
    def sources(self) -> list[Source]:
        if self._sources is None:
            raise RuntimeError("an answer's sources are known once its text has been read")
        return self._sources


class Answerer:
    """Turns a question (with its thread's history) into streamed text plus numbered sources.

    `rewrite_follow_ups=False` retrieves a follow-up with the thread's last question prepended
    instead of asking the model to rewrite it, as the keyless bot does: one model call less, for
    measuring what the rewrite costs (bench/quality/followup_latency.py)."""

    def __init__(
        self,
        settings: Settings,
        knowledge: Retriever,
        store: Store,
        *,
        llm: LLM | None = None,
        rewrite_follow_ups: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._knowledge = knowledge
        self._keys = KeyPolicy(settings, store)
        self._own_llm = llm is None
        self._llm = llm or LLM(settings)
        self._rewrite_follow_ups = rewrite_follow_ups

    async def close(self) -> None:
        if self._own_llm:
            await self._llm.close()

    def answer(self, question: str, history: Sequence[Turn], workspace: str) -> Answer:
        """The answer to `question`, written as it is read; reading it raises BotError
        subclasses."""
        return Answer(self._items(question, history, workspace))

    async def _items(
        self, question: str, history: Sequence[Turn], workspace: str
    ) -> AsyncIterator[str | list[Source]]:
        """Text deltas, then exactly one list of the sources the text cites."""
        question = question.strip()
        if not question:
            raise InputError("Ask me a question, for example: how do refunds work?")
        limit = self._settings.max_question_chars
        if len(question) > limit:
            raise InputError(
                f"That message is {len(question):,} characters long; I take questions of up to "
                f"{limit:,}. Ask about one part at a time, or quote only the lines that matter."
            )
        keys = await self._keys.keys(workspace)
        key = keys.chat
        turns = (
            list(history)[-self._settings.history_turns :] if self._settings.history_turns else []
        )
        query = await self._standalone(question, turns, key)
        with self._metrics.retrieval_seconds.time():
            found = await self._knowledge.retrieve(
                query, api_key=keys.embed, top_k=self._settings.retrieval_top_k
            )
        passages = list(found.passages)
        sources = [
            Source(n, p.path, p.heading, prompts.clip(p.text, EXCERPT_CHARS), p.score)
            for n, p in enumerate(passages, start=1)
        ]
        if not sources:
            # Truly nothing to show (no documents, or no word of the question in them and no
            # vectors): a fixed reply is honest, instant and free.
            yield prompts.DONT_KNOW
            yield []
        elif key is None:
            async for item in _passages_only(sources, found.relevant, workspace):
                yield item
        else:
            async for item in self._written(question, turns, sources, passages, key):
                yield item

    async def _written(
        self,
        question: str,
        turns: Sequence[Turn],
        sources: list[Source],
        passages: Sequence[Passage],
        key: str,
    ) -> AsyncIterator[str | list[Source]]:
        """The model's answer from the passages, then the sources it cited."""
        messages = self._prompt(question, turns, sources, [p.text for p in passages])
        written: list[str] = []
        metrics = self._metrics
        started = time.perf_counter()
        try:
            async for delta in self._llm.stream(
                messages, api_key=key, max_tokens=self._settings.answer_max_tokens
            ):
                if not written:
                    metrics.model_first_token.observe(time.perf_counter() - started)
                written.append(delta)
                yield delta
        except ModelError as error:
            metrics.model_failed(error)
            raise
        finally:
            metrics.model_seconds.labels("answer").observe(time.perf_counter() - started)
        cited = prompts.cited_numbers("".join(written))
        used = [source for source in sources if source.number in cited]
        if not used:
            yield "\n\n" + prompts.NO_CITATIONS
        yield used

    def _prompt(
        self, question: str, turns: Sequence[Turn], sources: list[Source], texts: list[str]
    ) -> list[Message]:
        """System, as much recent history as fits the model's context, then passages and question.

        The newest turns matter most to a follow-up, so the oldest go first; passages go (from
        the weakest) only when even no history leaves too little room."""
        budget = (
            self._settings.model_context_tokens
            - self._settings.answer_max_tokens
            - prompts.PROMPT_MARGIN_TOKENS
            - prompts.estimate_tokens(prompts.ANSWER_SYSTEM)
        )
        request = prompts.answer_request(question, sources, texts)
        while len(sources) > 1 and prompts.estimate_tokens(request) > budget:
            sources, texts = sources[:-1], texts[:-1]
            request = prompts.answer_request(question, sources, texts)
        budget -= prompts.estimate_tokens(request)
        kept: list[Message] = []
        for turn in reversed(turns):
            text = prompts.clip(turn.text, prompts.HISTORY_TURN_CHARS)
            budget -= prompts.estimate_tokens(text)
            if budget < 0:
                break
            kept.append(_message(turn.role, text))
        system: Message = {"role": "system", "content": prompts.ANSWER_SYSTEM}
        return [system, *reversed(kept), _message("user", request)]

    async def _standalone(self, question: str, turns: Sequence[Turn], key: str | None) -> str:
        """The question to retrieve with: a follow-up rewritten to stand on its own."""
        if not turns:
            return question
        last_user = next((t.text for t in reversed(turns) if t.role == "user"), "")
        fallback = f"{last_user}\n{question}" if last_user else question
        if key is None or not self._rewrite_follow_ups:
            return fallback
        messages: list[Message] = [
            {"role": "system", "content": prompts.CONDENSE_SYSTEM},
            _message("user", prompts.condense_request([(t.role, t.text) for t in turns], question)),
        ]
        try:
            with self._metrics.model_seconds.labels("condense").time():
                condensed = await self._llm.complete(messages, api_key=key)
        except InvalidApiKey as error:
            self._metrics.model_failed(error)
            raise  # the answer itself would fail the same way; say so now
        except ModelError as error:
            self._metrics.model_failed(error)
            log.warning("condensing a follow-up failed (%s); using the raw question", error.detail)
            return fallback
        condensed = condensed.strip().strip('"“”').strip()
        if not condensed or len(condensed) > MAX_QUERY_CHARS:
            return fallback
        return condensed


async def _passages_only(
    sources: list[Source], relevant: bool, workspace: str
) -> AsyncIterator[str | list[Source]]:
    """The keyless answer: the passages when they look relevant, else a plain decline; both end
    with how to get written answers, from where the question was asked."""
    outro = prompts.no_key_outro(workspace)
    if not relevant:
        yield prompts.NO_KEY_DECLINE + "\n\n" + outro
        yield []
        return
    yield prompts.NO_KEY_INTRO + "\n\n"
    for source in sources:
        yield prompts.no_key_passage(source) + "\n\n"
    yield outro
    yield sources


def _message(role: Literal["user", "assistant"], content: str) -> Message:
    if role == "assistant":
        return {"role": "assistant", "content": content}
    return {"role": "user", "content": content}
