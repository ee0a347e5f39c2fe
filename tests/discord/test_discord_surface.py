"""Discord's failures during a surface call as the core's errors: a 5xx or a lost connection is an
outage the editor retries within its budget (`PlatformUnavailable`), raised before discord.py can
retry it in hiding; other refusals are final."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import pytest

from adapters.discord.surface import platform_call, rate_limit_trace
from bot.errors import PlatformError, PlatformRateLimited, PlatformUnavailable


def response(status: int) -> Any:
    return SimpleNamespace(status=status, reason="", headers={})


async def raised(error: BaseException) -> PlatformError:
    with pytest.raises(PlatformError) as caught:
        async with platform_call("editing an answer"):
            raise error
    return caught.value


@pytest.mark.parametrize(
    "error",
    [
        discord.DiscordServerError(response(503), {"message": "upstream", "code": 0}),
        aiohttp.ServerDisconnectedError(),
        TimeoutError(),
    ],
)
async def test_an_outage_is_platform_unavailable(error: BaseException) -> None:
    assert isinstance(await raised(error), PlatformUnavailable)


async def test_a_refusal_is_final() -> None:
    error = await raised(discord.NotFound(response(404), {"message": "gone", "code": 10008}))
    assert not isinstance(error, PlatformUnavailable | PlatformRateLimited)
    assert "10008" in str(error)


async def test_a_5xx_is_raised_before_discord_py_retries_it_but_only_in_a_surface_call() -> None:
    [on_end] = rate_limit_trace().on_request_end
    params: Any = SimpleNamespace(response=response(502))
    await on_end(None, None, params)  # startup calls keep discord.py's own retries
    with pytest.raises(PlatformUnavailable, match="HTTP 502"):
        async with platform_call("editing an answer"):
            await on_end(None, None, params)
