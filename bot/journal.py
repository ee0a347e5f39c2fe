"""Answers in flight survive the process that was writing them.

Every answer is journalled (`bot/store/journal.py`) from before its placeholder is posted until
its end state is shown, with the adapter's address of the thread and the ids and texts of the
messages it has posted so far. While it runs, this process renews the row and the claim on its
platform event (so a redelivery during a five-minute answer is still refused). A row left by a
process that died (`kill -9`, out of memory, a lost machine) is adopted by the next process that
can reach its platform: the last message is ended with the interrupted notice, the question is
stored as a failed exchange, and the event is marked answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import INTERRUPTED, BotError
from bot.store import InFlight, Store
from bot.streaming.editor import MARKER, PLACEHOLDER, WARNING_SIGN
from bot.surface import BudgetSpec, Final, Surface

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # how often a live process renews its rows and claims
STALE_AFTER_SECONDS = 60.0  # a row not renewed for this long belongs to a dead process
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE = "/proc/self/ns/pid"

# Given an address an adapter journalled, a surface that reaches that thread again (None: it
# can't, e.g. the channel is gone).
Reopen = Callable[[dict[str, Any]], Awaitable[Surface | None]]


@dataclass(frozen=True)
class Address:
    """Where an answer is shown, as its adapter can find it again after a restart."""

    platform: str
    where: dict[str, Any]


def machine() -> str:
    """Where a pid names one process, so that kill(pid, 0) says whether it lives: the host's name
    and, on Linux, the kernel's boot and this process's pid namespace. Replicas in containers
    that share a hostname (host networking, a hostname set in compose) each number their pids
    from 1, and two machines may share a name: their rows are judged by their silence only."""
    host = socket.gethostname()
    try:
        boot = BOOT_ID.read_text().strip()
        namespace = os.readlink(PID_NAMESPACE)  # "pid:[4026531836]"
    except OSError:
        return host
    return f"{host}/{boot}/{namespace.removeprefix('pid:[').removesuffix(']')}"


class AnswerJournal:
    """One per process: begins, watches and ends journal rows, and mends the dead's."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        self._store = store
        self._heartbeat = heartbeat
        self._stale_after = stale_after
        self._host = machine()
        # The random part: a process started again in place may be given the old one's pid.
        self.owner = f"{self._host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._reopen: dict[str | None, Reopen | None] = {None: None}
        self._task: asyncio.Task[None] | None = None
        self._sweeping = asyncio.Lock()
        self._sweeps: set[asyncio.Task[int]] = set()  # started by mend_with

    async def begin(
        self,
        *,
        thread_key: str,
        workspace: str,
        question: str,
        author: str | None,
        event_id: str | None,
        address: Address | None,
    ) -> int:
        return await self._store.begin_answer(
            thread_key=thread_key,
            workspace=workspace,
            question=question,
            author=author,
            event_id=event_id,
            platform=address.platform if address else None,
            address=json.dumps(address.where) if address else None,
            owner=self.owner,
        )

    def watch(self, surface: Surface, answer: int) -> Surface:
        """`surface`, noting in the journal every message it posts and every text it shows."""
        return _Watched(surface, self._store, answer)

    async def end(self, answer: int) -> None:
        await self._store.end_answer(answer)

    def mend_with(self, platform: str, reopen: Reopen) -> None:
        """An adapter can reach `platform` again: its dead processes' answers get mended now."""
        self._reopen[platform] = reopen
        if self._task is not None:
            sweep = asyncio.get_running_loop().create_task(self.sweep(), name=f"mend {platform}")
            self._sweeps.add(sweep)
            sweep.add_done_callback(self._sweeps.discard)

    def start(self) -> None:
        """Renew this process's rows and sweep for dead ones, until `close`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="answer journal")

    async def close(self) -> None:
        # A mend under way finishes first: cut between its edit and its stored exchange, the
        # next process would mend the same answer again.
        async with self._sweeping:
            if self._task is not None:
                self._task.cancel()
        await asyncio.gather(*self._sweeps, return_exceptions=True)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._store.renew_answers(self.owner)
                await self.sweep()
            except Exception:
                log.exception("answer journal: renewing or mending failed; trying again")
            await asyncio.sleep(self._heartbeat)

    async def sweep(self) -> int:
        """Mend every answer a dead process left that an adapter here can reach; returns how
        many were mended."""
        mended = 0
        async with self._sweeping:
            for answer in await self._store.answers_in_flight():
                if answer.platform not in self._reopen or not self._dead(answer):
                    continue
                if not await self._store.adopt_answer(answer, self.owner):
                    continue  # another process took it first
                await self._mend(answer)
                mended += 1
        return mended

    def _dead(self, answer: InFlight) -> bool:
        if answer.owner == self.owner:
            return False
        if time.time() - answer.heartbeat_at > self._stale_after:
            return True
        host, _, rest = answer.owner.partition(":")
        if host != self._host:
            return False  # another machine's or container's: only its silence tells
        pid = int(rest.partition(":")[0])
        if pid == os.getpid():
            return True  # an earlier process that had this pid here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False

    async def _mend(self, answer: InFlight) -> None:
        reopen = self._reopen.get(answer.platform)
        if reopen is not None and answer.address is not None:
            try:
                surface = await reopen(json.loads(answer.address))
                if surface is not None:
                    await _show_interrupted(surface, answer.messages)
            except BotError as error:
                log.warning("could not mend interrupted answer %s: %s", answer.id, error.detail)
            except Exception:
                log.exception("could not mend interrupted answer %s", answer.id)
        if answer.answer_id is None:
            await self._store.record_exchange(
                thread_key=answer.thread_key,
                workspace=answer.workspace,
                question=answer.question,
                answer="",
                sources=[],
                status="failed",
                author=answer.author,
                journal=answer.id,
            )
        if answer.event_id is not None:
            await self._store.finish_event(answer.event_id)
        await self._store.end_answer(answer.id)
        log.info("mended answer %s interrupted in %s", answer.id, answer.workspace)


async def _show_interrupted(surface: Surface, messages: Sequence[tuple[str, str]]) -> None:
    notice = surface.render(f"{WARNING_SIGN} {INTERRUPTED}")
    if not messages:
        await surface.post(notice)
        return
    message_id, shown = messages[-1]
    text = shown.rstrip().removesuffix(MARKER).rstrip()
    if len(messages) == 1 and text == surface.render(PLACEHOLDER):
        text = ""  # only the placeholder was ever shown
    ended = f"{text}\n\n{notice}" if text else notice
    if surface.measure(ended) <= surface.max_size:
        await surface.edit(message_id, ended, final=Final(None))
    else:
        await surface.edit(message_id, text, final=Final(None))
        await surface.post(notice)


@dataclass
class _Watched:
    """A surface that journals what it shows; the journal's failures never fail the answer."""

    inner: Surface
    store: Store
    answer: int
    messages: list[tuple[str, str]] = field(default_factory=list)

    @property
    def max_size(self) -> int:
        return self.inner.max_size

    @property
    def shows_waiting(self) -> bool:
        return self.inner.shows_waiting

    @property
    def edit_budget(self) -> BudgetSpec:
        return self.inner.edit_budget

    @property
    def post_budget(self) -> BudgetSpec:
        return self.inner.post_budget

    def measure(self, text: str) -> int:
        return self.inner.measure(text)

    def render(self, markdown: str) -> str:
        return self.inner.render(markdown)

    def footer(self, sources: Sequence[Any]) -> str:
        return self.inner.footer(sources)

    async def post(self, text: str, *, final: Final | None = None) -> str:
        message_id = await self.inner.post(text, final=final)
        self.messages.append((message_id, text))
        await self._note()
        return message_id

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        # Noted first: a process killed while the platform takes the edit must not leave the
        # journal a write behind what people see (mending from it would take text back).
        self.messages = [(m, text if m == message_id else t) for m, t in self.messages]
        await self._note()
        await self.inner.edit(message_id, text, final=final)

    async def _note(self) -> None:
        try:
            await self.store.note_messages(self.answer, list(self.messages))
        except Exception:
            log.exception("could not journal answer %s's messages", self.answer)
