"""The one core call every adapter makes: answer a question in a thread, live, exactly once.

`Conversations.reply` claims the platform event (a redelivery gets no second answer), shows the
placeholder at once, streams the answer through the shared editor into the adapter's surface,
stores the exchange in one transaction, and always leaves the message in a visible end state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from bot.answer import Answerer, Turn
from bot.citations import Source
from bot.errors import ANSWER_CRASHED, BotError
from bot.journal import Address, AnswerJournal
from bot.limits import QuestionLimits, Refusal
from bot.metrics import Metrics, platform_of
from bot.settings import Settings
from bot.store import Status, Store, StoredMessage
from bot.streaming.editor import Editor
from bot.surface import Final, Surface

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    answer_id: int | None
    status: Literal["done", "failed", "cancelled", "refused"]
    text: str


class Conversations:
    """Turns questions into streamed, stored answers; one per process, shared by all adapters."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        answerer: Answerer,
        editor: Editor,
        journal: AnswerJournal | None = None,
        limits: QuestionLimits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._limits = limits or QuestionLimits(settings)
        self._store = store
        self._answerer = answerer
        self._editor = editor
        self._journal = journal or AnswerJournal(store)

    async def is_followup(self, thread_key: str) -> bool:
        """Whether the bot already takes part in this thread (so no mention is needed)."""
        return await self._store.has_conversation(thread_key)

    async def join(self, thread_key: str, workspace: str) -> None:
        """Take part in a thread from now on (its next messages need no mention)."""
        await self._store.ensure_conversation(thread_key, workspace)

    async def history(self, thread_key: str, limit: int | None = None) -> list[StoredMessage]:
        """The thread's stored messages, oldest first (with `limit`, the newest `limit`)."""
        return await self._store.thread_messages(thread_key, limit=limit)

    async def feedback(self, answer_id: int, value: int, *, user: str, workspace: str) -> bool:
        """Record 👍 (1) or 👎 (-1) on a stored answer of `workspace`; False if there is none."""
        return await self._store.set_feedback(answer_id, value, user=user, workspace=workspace)

    async def link(self, workspace: str, message: str, thread_key: str) -> None:
        """Remember that a platform message (named by the adapter, platform-qualified) belongs
        to a thread, so a reply to it continues that thread."""
        await self._store.link_message(workspace, message, thread_key)

    async def linked(self, workspace: str, message: str) -> str | None:
        """The thread a platform message was linked to, if any."""
        return await self._store.linked_thread(workspace, message)

    async def reply(
        self,
        *,
        surface: Surface,
        thread_key: str,
        workspace: str,
        question: str,
        author: str | None = None,
        event_id: str | None = None,
        address: Address | None = None,
    ) -> Reply | None:
        """Answer `question` into `surface`; None if `event_id` was already answered.

        `address` says where the answer is shown in a form the adapter can reopen after a
        restart (`AnswerJournal.mend_with`); without it, an answer cut off by a crash is still
        stored as failed, but its message can't be ended.
        """
        asked = self._editor.clock.monotonic()
        if event_id is not None and not await self._store.claim_event(event_id):
            log.info("event %s already handled; not answering twice", event_id)
            return None
        platform = platform_of(thread_key)
        surface = self._metrics.count(surface, platform)
        journal: int | None = None
        outcome = "failed"  # unless the answer says otherwise
        self._metrics.in_progress.labels(platform).inc()
        try:
            # Before retrieval and any model call; a redelivery was refused above, uncounted.
            refusal = await self._limits.admit(workspace, author)
            if refusal is not None:
                outcome = "refused"
                return await self._refuse(surface, workspace, author, refusal)
            journal = await self._journal.begin(
                thread_key=thread_key,
                workspace=workspace,
                question=question,
                author=author,
                event_id=event_id,
                address=address,
            )
            if address is not None:
                surface = self._journal.watch(surface, journal)
            reply = await self._reply(
                surface, thread_key, workspace, question, author, journal, since=asked
            )
            outcome = reply.status
            return reply
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self._metrics.in_progress.labels(platform).dec()
            self._metrics.answers.labels(platform, outcome).inc()
            # The end state is shown (or the task was cancelled past saving): nothing to mend.
            if journal is not None:
                await asyncio.shield(self._journal.end(journal))
            if event_id is not None:
                # Even a failed answer is final: its message shows the failure, and answering
                # again on redelivery would double it.
                await asyncio.shield(self._store.finish_event(event_id))

    async def _refuse(
        self, surface: Surface, workspace: str, author: str | None, refusal: Refusal
    ) -> Reply:
        """Say "slow down" where the answer would have been. The question is not stored: it
        would feed the thread's next answer, and storing it is part of what the limit spares."""
        limit = refusal.limit
        log.info(
            "question by %s in %s refused: over the %s limit of %d a minute",
            author,
            workspace,
            limit.who,
            limit.per_window,
        )
        stream = self._editor.stream(surface)
        stream.push(refusal.message)
        await stream.finish("", Final(None))
        return Reply(answer_id=None, status="refused", text=refusal.message)

    async def _reply(
        self,
        surface: Surface,
        thread_key: str,
        workspace: str,
        question: str,
        author: str | None,
        journal: int,
        *,
        since: float,
    ) -> Reply:
        """The answer, streamed and stored; `since`: when the question came (editor clock)."""
        stream = self._editor.stream(surface)
        await stream.start()
        sources: list[Source] = []
        status: Status = "done"
        warning: str | None = None
        try:
            history = await self._history(thread_key)
            answer = self._answerer.answer(question, history, workspace)
            async for delta in answer:
                stream.push(delta)
            sources = answer.sources
        except BotError as error:
            log.warning("answer failed in %s: %s", workspace, error.detail)
            status, warning = "failed", error.user_message
        except asyncio.CancelledError:
            status = "cancelled"
        except Exception:
            log.exception("answer crashed in %s", workspace)
            status, warning = "failed", ANSWER_CRASHED

        answer_text = stream.text
        # The exchange is stored before the final write, so the feedback buttons on that write
        # carry a real answer id; a failed answer is stored too, with what it had said.
        answer_id = await asyncio.shield(
            self._store.record_exchange(
                thread_key=thread_key,
                workspace=workspace,
                question=question,
                answer=answer_text,
                sources=sources if status == "done" else [],
                status=status,
                author=author,
                journal=journal,
            )
        )
        if status == "done":
            await stream.finish(surface.footer(sources), Final(answer_id, tuple(sources)))
        elif status == "cancelled":
            await asyncio.shield(stream.cancel())
        else:
            await stream.fail(warning or ANSWER_CRASHED)
        if status != "cancelled" and not stream.delivered:
            # The platform never took the end state (edits and the repost failed): people see
            # less than the stored answer, so it is not kept as a done one.
            log.warning("answer %s never reached %s; stored as failed", answer_id, workspace)
            status = "failed"
            await asyncio.shield(self._store.set_answer_status(answer_id, status))
        first_text = stream.timings.first_text
        if first_text is not None:
            platform = platform_of(thread_key)
            self._metrics.first_text.labels(platform).observe(max(0.0, first_text - since))
        if status == "cancelled":
            raise asyncio.CancelledError
        return Reply(answer_id=answer_id, status=status, text=answer_text)

    async def _history(self, thread_key: str) -> list[Turn]:
        limit = self._settings.history_turns
        if limit == 0:
            return []
        messages = await self._store.thread_messages(thread_key, limit=limit)
        return [Turn(role=m.role, text=m.text) for m in messages if m.text]
