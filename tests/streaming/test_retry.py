"""Riding out a platform outage, in virtual time: which failures are retried, the backoff between
tries, the window an answer's end gets, and the end posted anew when its message can't be
edited; every try within the budget, and `delivered` saying whether the end landed."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

from adapters.slack.mrkdwn import to_mrkdwn
from bot.errors import PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.streaming.clock import VirtualClock
from bot.streaming.editor import MARKER, AnswerStream, Editor
from bot.streaming.retry import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    RETRY_WINDOW,
    Backoff,
    transient,
)
from bot.surface import BudgetSpec, Final
from tests.fakes.surface import Call, FakeSurface
from tests.streaming.test_budget import most_in_any_window
from tests.streaming.test_editor import run, stream_words

SLACK_UPDATE = BudgetSpec("slack:T1:update", 50, 60.0)
HTTP_500 = "chat.update failed: HTTP 500"


def slack(
    clock: VirtualClock, channel: str, refuse: Callable[[Call], Exception | None]
) -> FakeSurface:
    return FakeSurface(
        clock,
        edit_budget=SLACK_UPDATE,
        post_budget=BudgetSpec(f"slack:T1:{channel}:post", 1, 1.0),
        max_size=3500,
        slack=True,
        refuse=refuse,
    )


def edits_down(start: float, end: float) -> Callable[[Call], Exception | None]:
    """chat.update answers HTTP 500 from `start` until `end` (clock time)."""

    def refuse(call: Call) -> Exception | None:
        if call.kind == "edit" and start <= call.at < end:
            return PlatformUnavailable(HTTP_500)
        return None

    return refuse


# -- the policy ------------------------------------------------------------------------------------


def test_outages_and_bugs_are_transient_refusals_are_not() -> None:
    assert transient(PlatformUnavailable("chat.update failed: HTTP 503"))
    assert transient(RuntimeError("an adapter's bug"))
    assert not transient(PlatformError("chat.update failed: msg_too_long"))
    assert not transient(PlatformError("chat.postMessage failed: channel_not_found"))


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    clock = VirtualClock()
    backoff = Backoff(clock, rng=random.Random(7))
    steps = [min(MAX_BACKOFF, FIRST_BACKOFF * 2**n) for n in range(8)]
    delays = [backoff.failed(ending=False) for _ in steps]
    for step, delay in zip(steps, delays, strict=True):
        assert delay is not None
        assert step / 2 <= delay <= step
    assert len(set(delays)) == len(delays)  # jittered, not in lockstep
    backoff.landed()
    first = backoff.failed(ending=False)
    assert first is not None and first <= FIRST_BACKOFF  # a new streak starts small


def test_the_end_gets_the_whole_window_from_its_own_first_failure() -> None:
    clock = VirtualClock()
    backoff = Backoff(clock, window=30.0)
    for _ in range(10):  # interim writes failing for a while...
        assert backoff.failed(ending=False) is not None
        clock.now += 5.0
    start = clock.now  # ...do not shorten the end's window
    while (delay := backoff.failed(ending=True)) is not None:
        clock.now += delay
    assert clock.now - start >= 30.0
    assert clock.now - start <= 30.0 + MAX_BACKOFF
    backoff.new_window()  # posting the end anew: another window
    assert backoff.failed(ending=True) is not None


# -- the editor through an outage --------------------------------------------------------------


def test_edits_failing_for_a_few_seconds_are_retried_and_every_end_lands_in_place() -> None:
    """Three answers end while chat.update answers 500 (from 2 s to 12 s): each end is retried
    with backoff, within the workspace's budget, and lands in its message once Slack is back."""
    outage = (2.0, 12.0)

    async def main(clock: VirtualClock) -> None:
        editor = Editor(clock=clock)
        surfaces = [slack(clock, f"C{i}", edits_down(*outage)) for i in range(3)]
        streams = [editor.stream(s) for s in surfaces]

        async def answer(index: int, stream: AnswerStream) -> str:
            await stream.start()
            await clock.sleep(0.5)
            text = await stream_words(stream, clock, 60, every=0.05)
            await stream.finish("", Final(index))
            return text

        texts = await asyncio.gather(*(answer(i, s) for i, s in enumerate(streams)))
        tries = [c.at for s in surfaces for c in s.calls + s.refused if c.kind == "edit"]
        assert most_in_any_window(tries, SLACK_UPDATE.window) <= SLACK_UPDATE.rate
        for index, (surface, stream, text) in enumerate(zip(surfaces, streams, texts, strict=True)):
            assert stream.delivered
            assert surface.messages == [to_mrkdwn(text)]  # in place: no second message
            assert surface.calls[-1].final == Final(index)
            assert outage[1] <= surface.calls[-1].at <= outage[1] + MAX_BACKOFF + 1.0
            refused = [c.at for c in surface.refused]
            assert len(refused) >= 3
            gaps = [later - earlier for earlier, later in itertools.pairwise(refused)]
            assert min(gaps) >= FIRST_BACKOFF / 2  # backed off, never hammered
            # Each try carried the newest text: an interim try is never older than the last.
            lengths = [len(c.text) for c in surface.refused if c.final is None]
            assert lengths == sorted(lengths)
            assert stream.timings.retried == len(refused)

    run(main)


def test_edits_failing_past_the_window_post_the_end_as_a_new_message() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = slack(clock, "C1", edits_down(2.0, 3600.0))
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        await clock.sleep(0.5)
        text = await stream_words(stream, clock, 60, every=0.05)
        ended = clock.monotonic()
        await stream.finish("", Final(4))

        stale, answer = surface.messages
        assert stale.endswith(MARKER)  # what the last accepted edit showed stays
        assert answer == to_mrkdwn(text)
        last = surface.calls[-1]
        assert (last.kind, last.final) == ("post", Final(4))
        assert last.at >= ended + RETRY_WINDOW  # the whole window was tried first
        assert last.at <= ended + RETRY_WINDOW + MAX_BACKOFF + 1.0
        assert stream.delivered
        assert stream.messages == [c.message_id for c in surface.calls if c.kind == "post"]
        assert stream.timings.reposted == 1

    run(main)


def test_a_refused_end_edit_is_posted_anew_without_waiting_out_the_window() -> None:
    def refuse(call: Call) -> Exception | None:
        deleted = call.kind == "edit" and call.final is not None
        return PlatformError("chat.update failed: message_not_found") if deleted else None

    async def main(clock: VirtualClock) -> None:
        surface = slack(clock, "C1", refuse)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        stream.push("The whole answer")
        await clock.sleep(2.0)
        ended = clock.monotonic()
        await stream.finish("", Final(5))
        assert len(surface.refused) == 1  # a refusal is not retried
        assert surface.messages[-1] == "The whole answer"
        assert surface.calls[-1].final == Final(5)
        assert clock.monotonic() - ended < 2.0
        assert stream.delivered

    run(main)


def test_when_neither_the_edit_nor_the_new_message_lands_the_stream_says_so() -> None:
    def refuse(call: Call) -> Exception | None:
        return PlatformUnavailable("HTTP 503") if call.at >= 1.0 else None

    async def main(clock: VirtualClock) -> None:
        surface = slack(clock, "C1", refuse)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        await clock.sleep(2.0)
        stream.push("An answer the platform never takes")
        ended = clock.monotonic()
        await stream.finish("", Final(6))
        assert not stream.delivered
        assert [c.kind for c in surface.calls] == ["post"]  # the placeholder, before the outage
        # Bounded: the edit's window, then the new message's, not forever.
        assert clock.monotonic() - ended <= 2 * (RETRY_WINDOW + MAX_BACKOFF) + 2.0
        assert {c.kind for c in surface.refused} == {"edit", "post"}

    run(main)


def test_a_429_during_an_outage_still_pauses_the_whole_budget() -> None:
    calls: list[float] = []

    def refuse(call: Call) -> Exception | None:
        calls.append(call.at)
        if len(calls) == 3:
            return PlatformRateLimited(10.0)
        if len(calls) in (4, 5):
            return PlatformUnavailable(HTTP_500)
        return None

    async def main(clock: VirtualClock) -> None:
        surface = slack(clock, "C1", refuse)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        text = await stream_words(stream, clock, 100, every=0.05)
        await stream.finish("", Final(1))
        limited_at = calls[2]
        assert not [t for t in calls if limited_at < t < limited_at + 10.0]
        assert surface.messages == [to_mrkdwn(text)]
        assert stream.delivered

    run(main)
