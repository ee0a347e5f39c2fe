"""Growth figures for issue 13, item 13: the rate-budget registry over web page loads, and a
synthetic 100k-row database before and after a prune.

    python -m bench.retention [--rows 100000] [--pages 1000]

Prints figures; asserts nothing (the tests hold the behaviour, this only measures it). The
probe writes that time how long an answer being stored waits during the prune are event claims,
so they show up among the processed_events left afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bot.retention import DAY, HOUR
from bot.settings import Settings
from bot.store import PRUNE_BATCH, Store
from bot.streaming.budget import Budgets, Priority
from bot.streaming.clock import VirtualClock
from bot.surface import BudgetSpec
from bot.vault import Vault

OLD_SHARE = 0.8  # rows made before the retention horizon
ANSWER = "An answer of a typical length, with a source or two. " * 10
# The defaults a deployment prunes with.
RETENTION_DAYS = int(Settings.model_fields["retention_days"].default)
EVENT_RETENTION_HOURS = int(Settings.model_fields["event_retention_hours"].default)
PROBE_EVERY = 0.005  # seconds between the probe writes that stand for answers being stored


def budgets_after_page_loads(pages: int) -> tuple[int, int]:
    """Budgets made and budgets still in the registry after `pages` web page loads, ten a
    second, each page's answer spending its own edit and post budget (as the web chat does)."""
    clock = VirtualClock()
    budgets = Budgets(clock)

    async def main() -> None:
        for number in range(pages):
            for kind in ("edit", "post"):
                budget = budgets.get(BudgetSpec(f"web:{kind}:{number}", 20, 1.0))
                async with budget.slot(lambda: (Priority.URGENT, 0.0)):
                    await clock.sleep(0.01)
            await clock.sleep(0.1)

    clock.run(main())
    return 2 * pages, len(budgets)


def fill(path: Path, rows: int, now: float) -> None:
    """`rows` in all: conversations of three exchanges (a tenth of the rows, and six tenths in
    their messages), event claims (two tenths) and reply links (a tenth), OLD_SHARE of each a
    year old (past any retention) and the rest from today."""
    threads = rows // 10
    with sqlite3.connect(path) as db:
        for n in range(threads):
            old = n < threads * OLD_SHARE
            stamp = "2000-01-01T00:00:00.000Z" if old else time.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            cursor = db.execute(
                "INSERT INTO conversations (thread_key, workspace, created_at) VALUES (?, ?, ?)",
                (f"slack:T1:C1:{n}", "slack:T1", stamp),
            )
            db.executemany(
                "INSERT INTO messages (conversation_id, role, text, created_at) "
                "VALUES (?, ?, ?, ?)",
                [
                    (
                        cursor.lastrowid,
                        role,
                        ANSWER if role == "assistant" else "A question?",
                        stamp,
                    )
                    for _ in range(3)
                    for role in ("user", "assistant")
                ],
            )
        events = rows * 2 // 10
        at = [now - 365 * DAY if n < events * OLD_SHARE else now for n in range(events)]
        db.executemany(
            "INSERT INTO processed_events (event_id, claimed_at, done) VALUES (?, ?, 1)",
            [(f"Ev{n}", t) for n, t in enumerate(at)],
        )
        links = rows // 10
        at = [now - 365 * DAY if n < links * OLD_SHARE else now for n in range(links)]
        db.executemany(
            "INSERT INTO reply_links (workspace, message, thread_key, created_at) "
            "VALUES (?, ?, ?, ?)",
            [
                ("discord:1", f"discord.thread_of:{n}", f"discord:1:2:{n}", t)
                for n, t in enumerate(at)
            ],
        )


def counts(path: Path) -> dict[str, int]:
    tables = ("conversations", "messages", "processed_events", "reply_links")
    with sqlite3.connect(path) as db:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def prune_figures(rows: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bot.db"
        store = await Store.open(path, Vault(b"k" * 32))
        now = time.time()
        fill(path, rows, now)
        before, bytes_before = counts(path), size(path)
        waits: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            # Stands for answers being stored during the prune: how long does one wait?
            n = 0
            while not done.is_set():
                started = time.perf_counter()
                await store.claim_event(f"probe{n}")
                waits.append(time.perf_counter() - started)
                n += 1
                await asyncio.sleep(PROBE_EVERY)

        prober = asyncio.create_task(probe())
        started = time.perf_counter()
        pruned = await store.prune(
            threads_before=now - RETENTION_DAYS * DAY,
            events_before=now - EVENT_RETENTION_HOURS * HOUR,
            links_before=now - RETENTION_DAYS * DAY,
            batch=batch,
        )
        took = time.perf_counter() - started
        done.set()
        await prober
        await store.close()
        after, bytes_after = counts(path), size(path)
        with sqlite3.connect(path) as db:
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            page = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute("VACUUM")
        vacuumed = size(path)
    print(
        f"synthetic database, {sum(before.values()):,} rows ({OLD_SHARE:.0%} past retention), "
        f"pruned {batch:,} rows per transaction:"
    )
    for table in before:
        print(f"  {table:17} {before[table]:>8,} -> {after[table]:>8,}")
    print(f"  pruned: {pruned}")
    longest = max(waits) * 1000
    print(f"  prune took {took:.2f} s; a write made meanwhile waited at most {longest:.1f} ms")
    print(f"  (median {statistics.median(waits) * 1000:.1f} ms over {len(waits)} probe writes)")
    print(
        f"  file: {bytes_before / 1e6:.1f} MB -> {bytes_after / 1e6:.1f} MB "
        f"({free * page / 1e6:.1f} MB of free pages, reused by new rows); "
        f"{vacuumed / 1e6:.1f} MB after VACUUM"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=1_000)
    args = parser.parse_args()
    made, kept = budgets_after_page_loads(args.pages)
    print(f"{args.pages:,} web page loads: {made:,} budgets made, {kept} still in the registry")
    asyncio.run(prune_figures(args.rows, PRUNE_BATCH))
    asyncio.run(prune_figures(args.rows, args.rows))  # for comparison: the whole prune at once


if __name__ == "__main__":
    main()
