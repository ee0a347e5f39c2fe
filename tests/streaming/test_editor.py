"""The streaming editor against a fake surface, in virtual time: what people see, and when.

Every call the fake receives is stamped with the virtual clock, so cadence, budgets and fairness
are asserted exactly, without wall-clock timing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from adapters.slack.mrkdwn import to_mrkdwn
from bot.errors import PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.streaming.clock import VirtualClock
from bot.streaming.editor import CANCELLED_NOTE, MARKER, PLACEHOLDER, AnswerStream, Editor
from bot.streaming.splitting import open_fence
from bot.surface import BudgetSpec, Final
from tests.fakes.surface import Call, FakeSurface
from tests.streaming.test_budget import most_in_any_window

SLACK_UPDATE = BudgetSpec("slack:T1:update", 50, 60.0)
SOURCES = "**Sources**\n[1] guide.md › Install"


def run(main: Callable[[VirtualClock], Awaitable[None]]) -> None:
    clock = VirtualClock()

    async def wrapper() -> None:
        await main(clock)

    clock.run(wrapper())


async def stream_words(
    stream: AnswerStream, clock: VirtualClock, words: int, every: float = 0.05
) -> str:
    sent = []
    for i in range(words):
        delta = f"word{i} " if i % 40 != 39 else f"word{i}.\n\n"
        sent.append(delta)
        stream.push(delta)
        await clock.sleep(every)
    return "".join(sent)


def slack_surface(clock: VirtualClock, channel: str = "C1") -> FakeSurface:
    return FakeSurface(
        clock,
        edit_budget=SLACK_UPDATE,
        post_budget=BudgetSpec(f"slack:T1:{channel}:post", 1, 1.0),
        max_size=3500,
        slack=True,
    )


def test_placeholder_goes_out_at_once_and_first_text_without_waiting() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        await clock.sleep(2.0)  # retrieval and the model's first token
        stream.push("Hello")
        await clock.sleep(0.5)
        first, second = surface.calls[:2]
        assert (first.kind, first.text, first.at) == ("post", PLACEHOLDER, 0.0)
        assert second.kind == "edit" and second.text.startswith("Hello")
        assert second.at == 2.0  # no interval waited before the first text
        await stream.finish("", Final(1))

    run(main)


def test_where_the_platform_shows_the_wait_the_first_call_carries_text() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock, shows_waiting=True)  # a deferred Discord interaction
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        await clock.sleep(2.0)
        assert surface.calls == []  # no placeholder spent on the channel's budget
        stream.push("Hello")
        await clock.sleep(0.5)
        first = surface.calls[0]
        assert (first.kind, first.at) == ("post", 2.0)
        assert first.text.startswith("Hello")
        await stream.finish("", Final(1))
        assert surface.messages == ["Hello"]

        # An answer that fails before any text still ends visibly.
        failing = FakeSurface(clock, shows_waiting=True)
        stream = Editor(clock=clock).stream(failing)
        await stream.start()
        await stream.fail("The API key was rejected.")
        assert failing.messages == ["⚠️ The API key was rejected."]

    run(main)


def test_many_deltas_coalesce_into_few_edits_within_the_budget() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        text = await stream_words(stream, clock, 200, every=0.05)  # 10 s of streaming
        await stream.finish("", Final(7))
        assert len(surface.calls) <= 2 + 10 + 2  # burst, then one a second, then the end
        assert most_in_any_window([c.at for c in surface.calls], 5.0) <= 5
        assert surface.calls[-1].text == text.rstrip()
        assert surface.messages == [text.rstrip()]

    run(main)


def test_no_edit_when_nothing_changed() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        await clock.sleep(1.0)
        stream.push("Partial answer")
        await clock.sleep(1.0)
        calls = len(surface.calls)
        stream.push("")
        await clock.sleep(120.0)  # the model stalls; nothing new to show
        assert len(surface.calls) == calls == 2
        await stream.finish("", Final(1))

    run(main)


def test_a_429_pauses_every_answer_on_the_budget_and_text_keeps_coalescing() -> None:
    limited_at: list[float] = []

    def refuse(call: Call) -> Exception | None:
        if call.kind == "edit" and call.at >= 3.0 and not limited_at:
            limited_at.append(call.at)
            return PlatformRateLimited(20.0)
        return None

    async def main(clock: VirtualClock) -> None:
        editor = Editor(clock=clock)
        surfaces = [FakeSurface(clock, refuse=refuse) for _ in range(3)]
        streams = [editor.stream(s) for s in surfaces]

        async def answer(stream: AnswerStream) -> str:
            await stream.start()
            text = await stream_words(stream, clock, 200, every=0.1)
            await stream.finish("", Final(1))
            return text

        texts = await asyncio.gather(*(answer(s) for s in streams))
        (pause_start,) = limited_at
        latency = surfaces[0].latency
        resumed = pause_start + latency + 20.0 - 1e-9  # float sums: 25.1 may be 25.0999...
        for surface, text in zip(surfaces, texts, strict=True):
            assert not [c for c in surface.calls if pause_start < c.at < resumed]
            after = [c for c in surface.calls if c.at >= resumed]
            assert after, "nothing was written after the pause"
            assert surface.messages == [text.rstrip()]
        # The first write after the pause carries all the text that arrived during it.
        first_after = min(
            (c for s in surfaces for c in s.calls if c.at >= resumed), key=lambda c: c.at
        )
        assert len(first_after.text) > 100

    run(main)


def test_a_long_answer_continues_in_new_messages_split_at_paragraphs() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        text = await stream_words(stream, clock, 1200, every=0.01)
        await stream.finish(SOURCES, Final(3))
        shown = surface.messages
        assert len(shown) >= 4
        assert all(len(m) <= surface.max_size for m in shown)
        assert "\n\n".join(m.strip() for m in shown) == text.rstrip() + "\n\n" + SOURCES
        assert all(m.rstrip().endswith(".") for m in shown[:-1])  # cut at paragraph ends
        # Buttons go on the last write of the answer only, on its last message.
        finals = [c for c in surface.calls if c.final is not None]
        assert finals == [surface.calls[-1]]
        assert finals[0].message_id == f"m{len(shown) - 1}"

    run(main)


def test_a_code_block_cut_between_messages_is_reopened_with_its_language() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock, max_size=400)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        stream.push("Run this:\n\n```python\n")
        for i in range(60):
            stream.push(f"print('step {i}')\n")
            await clock.sleep(0.05)
        stream.push("```\n\nThat is all.")
        await stream.finish("", Final(1))
        shown = surface.messages
        assert len(shown) >= 3
        for message in shown:
            assert len(message) <= 400
            assert open_fence(message) is None
        for message in shown[1:]:
            assert message.startswith("```python\n")
        assert shown[-1].endswith("That is all.")

    run(main)


def test_every_interim_edit_is_well_formed() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        for delta in [
            "Use **the ",
            "bold",
            " flag** like",
            " so:\n\n```sh\n",
            "tool --x",
            "\n``",
            "`\n",
        ]:
            stream.push(delta)
            await clock.sleep(1.0)
        await stream.finish("", Final(1))
        for call in surface.calls:
            assert open_fence(call.text) is None, call.text
            assert call.text.count("**") % 2 == 0, call.text
        interim = [c.text for c in surface.calls[1:-1]]
        assert all(t.endswith(MARKER) for t in interim)
        assert "Use **the bold** " + MARKER in interim

    run(main)


def test_slack_interim_edits_close_bold_in_mrkdwn() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = slack_surface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        await clock.sleep(1.0)
        stream.push("Set **the token")
        await clock.sleep(5.0)
        assert surface.messages == ["Set *the token* " + MARKER]
        stream.push("** & go")
        await stream.finish("", Final(1))
        assert surface.messages == ["Set *the token* &amp; go"]

    run(main)


def test_slack_messages_are_mrkdwn_and_fit_in_bytes() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = slack_surface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        for i in range(400):
            stream.push(f"**Step {i}**: see [docs](https://ex.com/{i}) & more é漢. ")
            if i % 10 == 9:
                stream.push("\n\n")
            await clock.sleep(0.05)
        await stream.finish(SOURCES, Final(9))
        assert len(surface.messages) >= 5
        for message in surface.messages:
            assert len(message.encode()) <= 3500
            assert "**" not in message and "[docs]" not in message
        assert surface.messages[0].startswith("*Step 0*: see <https://ex.com/0|docs> &amp; more")
        assert surface.messages[-1].endswith(to_mrkdwn(SOURCES))

    run(main)


def test_the_footer_goes_to_a_new_message_when_the_last_is_full() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock, max_size=200)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        stream.push("x" * 190)
        await clock.sleep(1.0)
        await stream.finish(SOURCES, Final(4))
        assert surface.messages == ["x" * 190, SOURCES]
        assert surface.finals == {"m0": None, "m1": Final(4)}

    run(main)


@pytest.mark.parametrize(
    ("end", "expected_tail", "final"),
    [
        ("done", "\n\n" + SOURCES, Final(5)),
        ("fail", "\n\n⚠️ The model took too long to answer.", Final(None)),
        ("cancel", "\n\n" + CANCELLED_NOTE, Final(None)),
    ],
)
def test_end_states_are_visible_and_nothing_is_left_thinking(
    end: str, expected_tail: str, final: Final
) -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        stream.push("The partial answer")
        await clock.sleep(3.0)
        if end == "done":
            await stream.finish(SOURCES, Final(5))
        elif end == "fail":
            await stream.fail("The model took too long to answer.")
        else:
            await stream.cancel()
        assert surface.messages == ["The partial answer" + expected_tail]
        assert surface.calls[-1].final == final
        assert MARKER not in surface.messages[0]

    run(main)


def test_a_failure_before_any_text_replaces_the_placeholder() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        await clock.sleep(1.0)
        await stream.fail("The API key was rejected.")
        assert surface.messages == ["⚠️ The API key was rejected."]
        assert surface.calls[-1].final == Final(None)

    run(main)


def test_a_platform_that_keeps_refusing_cannot_hang_the_answer() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock, refuse=lambda call: PlatformError("channel_not_found"))
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        stream.push("An answer nobody will see")
        await asyncio.wait_for(stream.finish(SOURCES, Final(1)), timeout=600)
        assert surface.calls == []
        assert 0 < len(surface.refused) <= 3 * 3  # bounded attempts per write, bounded writes

    run(main)


def test_an_edit_refused_a_few_times_is_retried_and_lands() -> None:
    refusals = iter([PlatformUnavailable("internal_error"), PlatformUnavailable("internal_error")])

    def refuse(call: Call) -> Exception | None:
        return next(refusals, None) if call.final is not None else None

    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock, refuse=refuse)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        stream.push("Answer")
        await clock.sleep(1.0)
        await stream.finish("", Final(2))
        assert surface.messages == ["Answer"]
        assert surface.finals["m0"] == Final(2)

    run(main)


def test_an_unexpected_error_from_an_adapter_is_retried_like_a_refusal() -> None:
    errors = iter([RuntimeError("adapter bug")])

    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock, refuse=lambda call: next(errors, None))
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        stream.push("Answer")
        await stream.finish("", Final(2))
        assert surface.messages == ["Answer"]
        assert surface.calls[-1].final == Final(2)

    run(main)


def test_finishing_before_the_placeholder_could_be_posted_posts_the_answer_directly() -> None:
    async def main(clock: VirtualClock) -> None:
        editor = Editor(clock=clock)
        busy = [slack_surface(clock) for _ in range(30)]  # one channel: 1 post a second
        streams = [editor.stream(s) for s in busy]
        for stream in streams:
            await stream.start()
        late = streams[-1]
        late.push("A quick answer")
        await late.finish("", Final(8))
        assert [c.kind for c in busy[-1].calls] == ["post"]
        assert busy[-1].messages == ["A quick answer"]
        for stream in streams[:-1]:
            await stream.cancel()

    run(main)


def test_a_cancelled_caller_still_leaves_the_message_finished() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock, latency=2.0)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        stream.push("Half an answer")
        await clock.sleep(5.0)
        caller = asyncio.create_task(stream.fail("Stopped."))
        await clock.sleep(0.5)
        caller.cancel()
        await clock.sleep(30.0)
        assert surface.messages == ["Half an answer\n\n⚠️ Stopped."]

    run(main)


def test_a_hundred_answers_sharing_one_slack_workspace() -> None:
    """Saturation: 100 answers, 50 edits a minute. Every first text, then every final text,
    comes before anyone's interim edit; all finish with their exact text."""
    answers = 100

    async def main(clock: VirtualClock) -> None:
        editor = Editor(clock=clock)
        # Each in its own channel, so placeholders go out at once and all wait on chat.update.
        surfaces = [slack_surface(clock, channel=f"C{i}") for i in range(answers)]

        async def answer(index: int) -> str:
            stream = editor.stream(surfaces[index])
            await stream.start()
            await clock.sleep(1.0 + index * 0.01)
            text = await stream_words(stream, clock, 150, every=0.2)  # 30 s of writing
            await stream.finish("", Final(index))
            return text

        texts = await asyncio.gather(*(answer(i) for i in range(answers)))
        edits = sorted(
            (c for s in surfaces for c in s.calls if c.budget == SLACK_UPDATE.key),
            key=lambda c: c.at,
        )
        assert most_in_any_window([c.at for c in edits], 60.0) <= 50
        owners = {id(c): i for i, s in enumerate(surfaces) for c in s.calls}
        # The first 100 grants are 100 different answers' first texts, in arrival order...
        first = [owners[id(c)] for c in edits[:answers]]
        assert first == list(range(answers))
        # ...then the final texts of those whose first text was not already their last; nobody
        # got an interim edit in between.
        assert all(c.final is not None for c in edits[answers:])
        assert len(edits) <= 2 * answers
        for surface, text, index in zip(surfaces, texts, range(answers), strict=True):
            assert surface.messages == [to_mrkdwn(text)]
            assert surface.calls[-1].final == Final(index)

    run(main)


def test_interim_edits_are_shared_fairly_under_saturation() -> None:
    async def main(clock: VirtualClock) -> None:
        editor = Editor(clock=clock)
        surfaces = [FakeSurface(clock) for _ in range(8)]  # one Discord channel: 5 per 5 s

        async def answer(surface: FakeSurface) -> None:
            stream = editor.stream(surface)
            await stream.start()
            await stream_words(stream, clock, 600, every=0.1)  # 60 s each, all at once
            await stream.finish("", Final(1))

        await asyncio.gather(*(answer(s) for s in surfaces))
        interim = [sum(1 for c in s.calls if c.final is None) for s in surfaces]
        assert max(interim) - min(interim) <= 1
        assert sum(len(s.calls) for s in surfaces) <= 5 * (clock.monotonic() / 5.0 + 1)

    run(main)


def test_marker_and_placeholder_never_survive_the_end() -> None:
    async def main(clock: VirtualClock) -> None:
        surface = FakeSurface(clock, max_size=300)
        stream = Editor(clock=clock).stream(surface)
        await stream.start()
        await stream_words(stream, clock, 200, every=0.02)
        await stream.finish(SOURCES, Final(1))
        for message in surface.messages:
            assert MARKER not in message and PLACEHOLDER not in message
        assert re.search(r"word199\.?\n\n\*\*Sources\*\*", surface.messages[-1])

    run(main)


def test_closing_the_editor_ends_every_answer_still_streaming() -> None:
    async def main(clock: VirtualClock) -> None:
        editor = Editor(clock=clock)
        ending, abandoned = FakeSurface(clock), FakeSurface(clock)
        first, second = editor.stream(ending), editor.stream(abandoned)
        await first.start()
        await second.start()
        first.push("Almost")
        second.push("Never finished")
        await clock.sleep(2.0)
        stopping = asyncio.create_task(first.fail("Shutting down."))
        await asyncio.sleep(0)  # the conversation's own end state comes first
        await editor.close(grace=30.0)
        await stopping
        assert ending.messages == ["Almost\n\n⚠️ Shutting down."]
        assert abandoned.messages == ["Never finished\n\n" + CANCELLED_NOTE]
        assert clock.monotonic() <= 2.0 + 30.0

    run(main)


def test_closing_gives_up_on_a_platform_that_does_not_answer() -> None:
    async def main(clock: VirtualClock) -> None:
        editor = Editor(clock=clock)
        surface = FakeSurface(clock)
        stream = editor.stream(surface)
        await stream.start()
        stream.push("Text")
        await clock.sleep(2.0)
        surface.latency = 3600.0  # the platform hangs
        await editor.close(grace=10.0)
        assert clock.monotonic() == pytest.approx(12.0)

    run(main)


def test_a_placeholder_waiting_for_its_turn_goes_out_with_the_first_text_at_once() -> None:
    async def main(clock: VirtualClock) -> None:
        # A slow post budget (Slack's chat.startStream: 20 a minute): two placeholders go at
        # once, the third waits for the pacing's next token, 3 s later.
        starts = BudgetSpec("slack:T1:chat.startStream", 20, 60.0)
        editor = Editor(clock=clock)
        surfaces = [FakeSurface(clock, post_budget=starts) for _ in range(3)]
        streams = [editor.stream(s) for s in surfaces]
        for stream in streams:
            await stream.start()
        await clock.sleep(0.5)
        assert surfaces[2].calls == []  # its placeholder is still queued
        streams[2].push("Hello")  # its first text: urgent, not paced
        await clock.sleep(0.1)
        first = surfaces[2].calls[0]
        assert first.text.startswith("Hello") and first.at == 0.5
        for stream in streams:
            await stream.finish("", Final(1))

    run(main)
