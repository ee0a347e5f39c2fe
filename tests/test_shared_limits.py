"""Question limits shared through Redis: two replicas (two counters, each with its own client)
count a person's and a workspace's questions in the same windows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from bot.limits import QuestionLimits
from bot.settings import Settings
from bot.shared import Shared
from bot.shared_limits import SharedCounter


@pytest.fixture
async def replicas(redis_url: str, tmp_path: Path) -> AsyncIterator[list[QuestionLimits]]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        questions_per_minute_per_user=3,
        questions_per_minute_per_workspace=5,
    )
    shared = [Shared(redis.asyncio.from_url(redis_url), "test") for _ in range(2)]
    yield [QuestionLimits(settings, SharedCounter(each)) for each in shared]
    for each in shared:
        await each.close()


async def test_a_person_s_questions_count_on_every_replica(
    replicas: list[QuestionLimits],
) -> None:
    first, second = replicas
    assert await first.admit("slack:T1", "UALICE") is None
    assert await second.admit("slack:T1", "UALICE") is None
    assert await first.admit("slack:T1", "UALICE") is None

    refused = await second.admit("slack:T1", "UALICE")  # the fourth in a minute, anywhere

    assert refused is not None
    assert refused.limit.who == "user"
    assert 0 < refused.retry_after <= 60
    assert refused.message.startswith("Slow down: you can ask 3 questions a minute here")
    assert await first.admit("slack:T1", "UBOB") is None  # someone else still may


async def test_the_workspace_limit_is_shared_and_a_refusal_counts_nowhere(
    replicas: list[QuestionLimits],
) -> None:
    first, second = replicas
    for person in ("U1", "U2", "U3", "U4"):
        assert await (first if person < "U3" else second).admit("slack:T1", person) is None
    assert await second.admit("slack:T1", "U5") is None  # the fifth: the workspace is full

    refused = await first.admit("slack:T1", "U6")

    assert refused is not None and refused.limit.who == "workspace"
    assert await second.admit("slack:T2", "U6") is None  # another workspace has its own
    # U6's refused question was not counted under U6: all or nothing.
    assert await first.admit("slack:T2", "U6") is None
    assert await second.admit("slack:T2", "U6") is None
