"""Benchmark of the streaming editor: M concurrent answers into a fake platform, in virtual time.

    .venv/bin/python bench/editor.py [--answers 1,20,100,500] [--seed 7]

Each answer: a question at t in [0, 1) s, a placeholder, retrieval and the model's first token
1-2 s later, then ~600 small deltas at ~40 a second, then finish with a sources footer. Every
platform call takes 0.1-0.4 s. Slack-like: one workspace (chat.update 50/min shared by all),
answers spread over 10 channels (chat.postMessage 1/s each), 3,500-byte messages in mrkdwn.
"slack-own-ch": the same workspace with every answer in a channel of its own, so placeholders all go
out at once and every answer then waits on chat.update. Discord-like: 10 channels, create and
edit sharing 5 per 5 s per channel, 2,000 characters.

Time is virtual (`bot.streaming.clock.VirtualClock`): the loop jumps to the next timer whenever
every task waits, so a 20-minute saturated run takes seconds, and the timings depend only on the
budgets and the simulated latencies. CPU is real: process time of the run, minus a baseline run
of the same simulated model into a no-op stream, per 1,000 deltas.

The floor: the same budgets serving only the calls every answer must make (Discord: placeholder,
first text, final text; Slack's chat.update: first text and final text) at the moment each
becomes possible, with the smallest latency. "first" is first delta -> first visible text;
"done" is when the last answer's final text landed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.discord.surface import HELD_RESPONSE_BOUND
from adapters.slack.mrkdwn import to_mrkdwn
from bot.citations import Source, sources_markdown
from bot.streaming.budget import Budget, Priority
from bot.streaming.clock import VirtualClock
from bot.streaming.editor import AnswerStream, Editor
from bot.surface import BudgetSpec, Final

CHANNELS = 10
LATENCY = (0.1, 0.4)
ARRIVAL_SPREAD = 1.0
FIRST_TOKEN = (1.0, 2.0)
DELTAS = 600
DELTA_EVERY = 0.025
FOOTER = "**Sources**\n[1] handbook/setup.md › Install\n[2] handbook/faq.md › Tokens"
WORDS = [
    "the",
    "bot",
    "answers",
    "from",
    "your",
    "documents",
    "and",
    "cites",
    "where",
    "each",
    "fact",
    "was",
    "found",
]


@dataclass(frozen=True)
class Platform:
    name: str
    max_size: int
    slack: bool
    channels: int | None = CHANNELS  # None: every answer in a channel of its own

    def channel(self, index: int) -> int:
        return index if self.channels is None else index % self.channels

    def edit_spec(self, channel: int) -> BudgetSpec:
        if self.slack:
            return BudgetSpec("slack:T1:update", 50, 60.0)
        return BudgetSpec(f"discord:G:{channel}", 5, 5.0, arrival_bound=HELD_RESPONSE_BOUND)

    def post_spec(self, channel: int) -> BudgetSpec:
        if self.slack:
            return BudgetSpec(f"slack:T1:C{channel}:post", 1, 1.0)
        return BudgetSpec(f"discord:G:{channel}", 5, 5.0, arrival_bound=HELD_RESPONSE_BOUND)


SLACK = Platform("slack", 3500, slack=True)
# The saturation case: placeholders all out at once, every answer then waiting on the
# workspace's 50 chat.update calls a minute.
SLACK_SPREAD = Platform("slack-own-ch", 3500, slack=True, channels=None)
DISCORD = Platform("discord", 2000, slack=False)


@dataclass
class Sink:
    """A fake platform surface: records what each message shows and how many calls it took."""

    platform: Platform
    channel: int
    clock: VirtualClock
    rng: random.Random
    shown: dict[str, str] = field(default_factory=dict)
    edit_calls: int = 0
    post_calls: int = 0

    @property
    def max_size(self) -> int:
        return self.platform.max_size

    shows_waiting = False

    @property
    def edit_budget(self) -> BudgetSpec:
        return self.platform.edit_spec(self.channel)

    @property
    def post_budget(self) -> BudgetSpec:
        return self.platform.post_spec(self.channel)

    def measure(self, text: str) -> int:
        return len(text.encode()) if self.platform.slack else len(text)

    def render(self, markdown: str) -> str:
        return to_mrkdwn(markdown) if self.platform.slack else markdown

    def footer(self, sources: Sequence[Source]) -> str:
        return sources_markdown(sources)

    async def post(self, text: str, *, final: Final | None = None) -> str:
        await self.clock.sleep(self.rng.uniform(*LATENCY))
        self.post_calls += 1
        message_id = str(len(self.shown))
        self.shown[message_id] = text
        return message_id

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        await self.clock.sleep(self.rng.uniform(*LATENCY))
        self.edit_calls += 1
        self.shown[message_id] = text


def answer_text(rng: random.Random) -> str:
    paragraphs = []
    for index in range(8):
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
            for _ in range(rng.randint(2, 4))
        ]
        paragraph = " ".join(sentences).replace(" documents ", " **documents** ", 1)
        if index == 4:
            paragraph += "\n\n```sh\nbot ingest --knowledge ./docs\nbot run\n```"
        paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def deltas(text: str, rng: random.Random, count: int) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(count - 1, len(text) - 1)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@dataclass
class Outcome:
    first_delta: float
    first_text: float
    ended: float
    final: float
    exact: bool
    arrival: float


async def one_answer(
    editor: Editor | None, sink: Sink, rng: random.Random, clock: VirtualClock
) -> tuple[Outcome | None, int]:
    arrival = rng.uniform(0, ARRIVAL_SPREAD)
    text = answer_text(rng)
    pieces = deltas(text, rng, DELTAS)
    await clock.sleep(arrival)
    stream: AnswerStream | None = editor.stream(sink) if editor else None
    if stream:
        await stream.start()
    await clock.sleep(rng.uniform(*FIRST_TOKEN))
    for piece in pieces:
        if stream:
            stream.push(piece)
        await clock.sleep(DELTA_EVERY)
    if stream is None:
        return None, len(pieces)
    await stream.finish(FOOTER, Final(1))
    shown = "\n\n".join(sink.shown[k].strip() for k in sorted(sink.shown, key=int))
    expected = sink.render(text + "\n\n" + FOOTER)
    t = stream.timings
    assert t.first_delta is not None and t.first_text is not None and t.final is not None
    assert t.ended is not None
    outcome = Outcome(t.first_delta, t.first_text, t.ended, t.final, shown == expected, arrival)
    return outcome, len(pieces)


async def scenario(
    platform: Platform, answers: int, seed: int, clock: VirtualClock, real: bool
) -> tuple[list[Outcome | None], int, list[Sink], float]:
    editor = Editor(clock=clock) if real else None
    sinks = [
        Sink(platform, platform.channel(i), clock, random.Random(seed + i)) for i in range(answers)
    ]
    results = await asyncio.gather(
        *(
            one_answer(editor, sink, random.Random(seed * 1000 + i), clock)
            for i, sink in enumerate(sinks)
        )
    )
    return [r[0] for r in results], sum(r[1] for r in results), sinks, clock.monotonic()


async def floor(platform: Platform, outcomes: list[Outcome], clock: VirtualClock) -> list[float]:
    """When each answer's text could first be visible, and the last final text could land, if
    the budgets carried only the calls an answer cannot do without: its first post (carrying
    text if text has arrived by then), its first text, its final text (one write when the first
    text's turn comes after the answer ended)."""
    budgets: dict[str, Budget] = {}
    firsts = [0.0] * len(outcomes)
    finals = [0.0] * len(outcomes)

    def budget(spec: BudgetSpec) -> Budget:
        return budgets.setdefault(spec.key, Budget(spec, clock))

    async def call(spec: BudgetSpec, at: float, priority: Priority) -> float:
        await clock.sleep(at - clock.monotonic())
        async with budget(spec).slot(lambda: (priority, at)):
            granted = clock.monotonic()
            await clock.sleep(LATENCY[0])
        return granted

    async def answer(index: int, outcome: Outcome) -> None:
        channel = platform.channel(index)
        posted = await call(platform.post_spec(channel), outcome.arrival, Priority.PLACEHOLDER)
        first = posted
        if posted < outcome.first_delta:
            first = await call(platform.edit_spec(channel), outcome.first_delta, Priority.URGENT)
        firsts[index] = first + LATENCY[0]
        if first >= outcome.ended:  # that one write carried the final text too
            finals[index] = first + LATENCY[0]
        else:
            edit = platform.edit_spec(channel)
            finals[index] = await call(edit, outcome.ended, Priority.URGENT) + LATENCY[0]

    await asyncio.gather(*(answer(i, o) for i, o in enumerate(outcomes)))
    return [*firsts, max(finals)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(platform: Platform, answers: int, seed: int) -> list[str]:
    clock = VirtualClock()
    cpu = time.process_time()
    outcomes, delta_count, sinks, duration = clock.run(
        scenario(platform, answers, seed, clock, real=True)
    )
    cpu_editor = time.process_time() - cpu
    base_clock = VirtualClock()
    cpu = time.process_time()
    base_clock.run(scenario(platform, answers, seed, base_clock, real=False))
    cpu_base = time.process_time() - cpu
    done = [o for o in outcomes if o is not None]
    floor_clock = VirtualClock()
    floors = floor_clock.run(floor(platform, done, floor_clock))
    first = [o.first_text - o.first_delta for o in done]
    first_floor = [f - o.first_delta for f, o in zip(floors[:-1], done, strict=True)]
    all_done = max(o.final for o in done)
    edits = sum(s.edit_calls for s in sinks)
    posts = sum(s.post_calls for s in sinks)
    # Calls on the edit budgets (Discord's posts draw on the same budget as its edits), against
    # what the platform's sliding windows could have granted over the run.
    used = edits if platform.slack else edits + posts
    spec = sinks[0].edit_budget
    keys = {s.edit_budget.key for s in sinks}
    allowed = len(keys) * spec.rate * math.ceil(duration / spec.window)
    exact = sum(o.exact for o in done)
    per_1000 = (cpu_editor - cpu_base) / delta_count * 1000 * 1000
    return [
        platform.name,
        str(answers),
        f"{pct(first, 0.5):.1f} / {pct(first, 0.95):.1f}",
        f"{pct(first_floor, 0.5):.1f} / {pct(first_floor, 0.95):.1f}",
        f"{all_done:.0f} / {floors[-1]:.0f}",
        f"{used} / {allowed}",
        f"{exact}/{len(done)}",
        f"{per_1000:.1f}",
    ]


HEADER = [
    "platform",
    "M",
    "first text s p50/p95",
    "floor p50/p95",
    "all done s / floor",
    "calls on edit budget / allowed",
    "final exact",
    "CPU ms/1k deltas",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", default="1,20,100,500")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = [HEADER]
    wall = time.perf_counter()
    for platform in (SLACK, SLACK_SPREAD, DISCORD):
        for answers in (int(a) for a in args.answers.split(",")):
            rows.append(measure(platform, answers, args.seed))
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines))
    print(f"\n(wall {time.perf_counter() - wall:.0f} s)")


if __name__ == "__main__":
    main()
