"""The answer journal: answers in flight, so one cut off by a dead process is ended, not lost.

A row is written before the placeholder is posted and deleted once the answer's end state is
shown. The process answering renews `heartbeat_at` (and the claim on the platform event) while
it runs; a row whose owner stopped doing so belongs to a dead process and may be adopted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from bot.store.database import Database, atomic
from bot.store.driver import Row
from bot.vault import ANSWER_ADDRESS


@dataclass(frozen=True)
class InFlight:
    """One journalled answer; `address` is the adapter's JSON saying where it is shown."""

    id: int
    thread_key: str
    workspace: str
    question: str
    author: str | None
    event_id: str | None
    platform: str | None
    address: str | None
    messages: list[tuple[str, str]]  # (message id, rendered text last accepted), in order
    answer_id: int | None
    owner: str
    heartbeat_at: float


class Journal(Database):
    @atomic
    async def begin_answer(
        self,
        *,
        thread_key: str,
        workspace: str,
        question: str,
        author: str | None,
        event_id: str | None,
        platform: str | None,
        address: str | None,
        owner: str,
    ) -> int:
        sealed = (
            self._vault.encrypt(address, kind=ANSWER_ADDRESS, workspace=workspace)
            if address is not None
            else None
        )
        async with self._transaction() as db:
            row = await db.fetchone(
                "INSERT INTO answers_in_flight (thread_key, workspace, question, author, "
                "event_id, platform, address, owner, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (thread_key, workspace, question, author, event_id, platform, sealed, owner,
                 time.time()),
            )  # fmt: skip
        assert row is not None
        return int(row[0])

    @atomic
    async def note_messages(self, answer: int, messages: list[tuple[str, str]]) -> None:
        """What the platform now shows of the answer: every message id and its text."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE answers_in_flight SET messages = ? WHERE id = ?",
                (json.dumps(messages), answer),
            )

    @atomic
    async def end_answer(self, answer: int) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM answers_in_flight WHERE id = ?", (answer,))

    @atomic
    async def renew_answers(self, owner: str) -> int:
        """Say that `owner` is alive: its rows and its claims on their events are fresh again
        (a claim must outlive the slowest answer, not just its first two minutes)."""
        now = time.time()
        async with self._transaction() as db:
            renewed = await db.execute(
                "UPDATE answers_in_flight SET heartbeat_at = ? WHERE owner = ?", (now, owner)
            )
            await db.execute(
                "UPDATE processed_events SET claimed_at = ? WHERE done = 0 AND event_id IN "
                "(SELECT event_id FROM answers_in_flight WHERE owner = ?)",
                (now, owner),
            )
            return renewed

    async def answers_in_flight(self) -> list[InFlight]:
        rows = await self._read.fetch("SELECT * FROM answers_in_flight ORDER BY id")
        return [self._in_flight(row) for row in rows]

    @atomic
    async def adopt_answer(self, answer: InFlight, owner: str) -> bool:
        """Take a dead process's row over for mending; False if someone else was first (or
        its owner turned out to be alive after all).

        A conditional update: on PostgreSQL a second adopter waits for the first one's row
        and then finds its owner changed, so one process mends each dead answer."""
        async with self._transaction() as db:
            adopted = await db.execute(
                "UPDATE answers_in_flight SET owner = ?, heartbeat_at = ? "
                "WHERE id = ? AND owner = ? AND heartbeat_at = ?",
                (owner, time.time(), answer.id, answer.owner, answer.heartbeat_at),
            )
            return adopted == 1

    def _in_flight(self, row: Row) -> InFlight:
        sealed = row["address"]
        return InFlight(
            id=row["id"],
            thread_key=row["thread_key"],
            workspace=row["workspace"],
            question=row["question"],
            author=row["author"],
            event_id=row["event_id"],
            platform=row["platform"],
            address=(
                self._vault.decrypt(bytes(sealed), kind=ANSWER_ADDRESS, workspace=row["workspace"])
                if sealed is not None
                else None
            ),
            messages=[(str(i), str(t)) for i, t in json.loads(row["messages"])],
            answer_id=row["answer_id"],
            owner=row["owner"],
            heartbeat_at=row["heartbeat_at"],
        )
