"""Which gateway shards this process runs (DISCORD_SHARD_COUNT, DISCORD_SHARD_IDS), the
discord.py client options that follow, and whether this process is the one that syncs the slash
commands. Discord sends each server's events down one shard only: `(guild_id >> 22) % count`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import discord

from bot.settings import Settings

log = logging.getLogger(__name__)

GUILDS_PER_SHARD = 2500  # Discord refuses a session carrying more: sharding required
LOW_SESSION_STARTS = 100  # of the 1,000 IDENTIFYs a day: few enough left to warn about
MS_PER_HOUR = 3_600_000
# Gateway close codes that no reconnect can mend: the shard settings are wrong for this bot.
INVALID_SHARD = 4010
SHARDING_REQUIRED = 4011
SHARD_ERRORS = {
    INVALID_SHARD: (
        "Discord refused the shard settings: check that DISCORD_SHARD_COUNT is the same in every "
        "process and DISCORD_SHARD_IDS are below it."
    ),
    SHARDING_REQUIRED: (
        "Discord requires sharding for this many servers: set DISCORD_SHARD_COUNT (at least one "
        "shard per 2,500 servers; GET /gateway/bot says how many Discord recommends)."
    ),
}


@dataclass(frozen=True)
class ShardPlan:
    """The shards of one process: `count` None means one connection without sharding."""

    count: int | None
    ids: tuple[int, ...]

    @classmethod
    def of(cls, settings: Settings) -> ShardPlan:
        count = settings.discord_shard_count
        if count is None:
            return cls(None, ())
        return cls(count, tuple(sorted(settings.discord_shard_ids)) or tuple(range(count)))

    @property
    def several(self) -> bool:
        """More than one shard here: discord.py's AutoShardedClient runs them on one loop."""
        return len(self.ids) > 1

    def client_options(self) -> dict[str, Any]:
        if self.count is None:
            return {}
        if self.several:
            return {"shard_ids": list(self.ids), "shard_count": self.count}
        return {"shard_id": self.ids[0], "shard_count": self.count}

    @property
    def syncs_commands(self) -> bool:
        # Slash commands belong to the application, not to a shard. Were every process to sync,
        # N processes would PUT the same command set at once: they race on the stored hash (each
        # reads it before another writes it) and each PUT spends the application's small
        # command-write rate limit. The process running shard 0 exists exactly once.
        return self.count is None or 0 in self.ids

    def __str__(self) -> str:
        if self.count is None:
            return "no sharding"
        listed = ", ".join(map(str, self.ids))
        return f"shard{'s' if self.several else ''} {listed} of {self.count}"


async def report_gateway(http: discord.http.HTTPClient, plan: ShardPlan) -> None:
    """Log what Discord says of this bot's gateway use: the shards it recommends, against those
    configured, and the session starts left today (each IDENTIFY of each shard spends one, and a
    bot out of them cannot connect until the reset)."""
    try:
        recommended, _, limits = await http.get_bot_gateway()
    except discord.GatewayNotFound:
        log.warning("could not ask Discord how many shards it recommends (GET /gateway/bot)")
        return
    remaining, total = limits["remaining"], limits["total"]
    hours = limits["reset_after"] / MS_PER_HOUR
    log.info(
        "Discord recommends %d shard(s); running %s; %d of %d session starts left (reset: %.1f h)",
        recommended,
        plan,
        remaining,
        total,
        hours,
    )
    if recommended > (plan.count or 1):
        log.warning(
            "Discord recommends %d shards but DISCORD_SHARD_COUNT is %s: set it to at least %d "
            "(Discord refuses to connect past %d servers per shard)",
            recommended,
            plan.count or "unset",
            recommended,
            GUILDS_PER_SHARD,
        )
    if remaining < LOW_SESSION_STARTS:
        log.warning(
            "only %d of %d Discord session starts left for %.1f h: every restart of every shard "
            "spends one, and none left means no connection until the reset",
            remaining,
            total,
            hours,
        )
