"""bot/limits.py with an injected clock: sliding windows, the wait a refusal names, all-or-nothing
counting, and idle windows dropped."""

from __future__ import annotations

from pathlib import Path

from bot.limits import SWEEP_INTERVAL, InProcessCounter, Limit, QuestionLimits
from bot.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(tmp_path: Path, clock: Clock, per_user: int, per_workspace: int) -> QuestionLimits:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        questions_per_minute_per_user=per_user,
        questions_per_minute_per_workspace=per_workspace,
    )
    return QuestionLimits(settings, InProcessCounter(clock))


async def test_a_window_slides_and_the_refusal_names_the_wait(tmp_path: Path) -> None:
    clock = Clock()
    admit = limits(tmp_path, clock, per_user=2, per_workspace=0).admit

    assert await admit("slack:T1", "U1") is None
    clock.now += 20
    assert await admit("slack:T1", "U1") is None
    clock.now += 10
    refused = await admit("slack:T1", "U1")

    assert refused is not None and refused.retry_after == 30.0  # the first ages out at +60
    assert refused.message == (
        "Slow down: you can ask 2 questions a minute here; try again in 30 s."
    )
    clock.now += 30
    assert await admit("slack:T1", "U1") is None  # one slot free again
    assert await admit("slack:T1", "U1") is not None


async def test_people_and_workspaces_are_counted_apart(tmp_path: Path) -> None:
    clock = Clock()
    admit = limits(tmp_path, clock, per_user=1, per_workspace=3).admit

    assert await admit("slack:T1", "U1") is None
    assert await admit("slack:T1", "U2") is None
    assert await admit("slack:T2", "U1") is None  # the same id in another workspace
    refused = await admit("slack:T1", "U1")
    assert refused is not None and refused.limit.who == "user"
    # A refused question is not counted: the workspace still has one question left.
    assert await admit("slack:T1", "U3") is None
    full = await admit("slack:T1", "U4")
    assert full is not None and full.message.startswith(
        "Slow down: this workspace can ask 3 questions a minute;"
    )


async def test_zero_means_no_limit(tmp_path: Path) -> None:
    admit = limits(tmp_path, Clock(), per_user=0, per_workspace=0).admit
    assert all([await admit("discord:1", "7") is None for _ in range(100)])


async def test_idle_windows_are_dropped() -> None:
    clock = Clock()
    counter = InProcessCounter(clock)
    for n in range(500):
        assert await counter.take([Limit(f"user:slack:T1:U{n}", 6, "user")]) is None
    assert len(counter) == 500

    clock.now += SWEEP_INTERVAL + 1
    assert await counter.take([Limit("user:slack:T1:UNEW", 6, "user")]) is None

    assert len(counter) == 1  # only the person asking now is remembered
