"""The fake gateway's sessions: one per IDENTIFY, for a shard (`shard: [id, count]`) or for the
whole bot; which guilds a session carries (Discord's `(guild_id >> 22) % count`), what it was
sent, and Discord's checks of the IDENTIFY payload itself (its gateway docs: the OpenAPI spec
describes REST only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.discord.state import shard_of, snowflake

# Discord closes a session that would carry more guilds than this: sharding required.
MAX_GUILDS_PER_SHARD = 2500
INVALID_SHARD = 4010
SHARDING_REQUIRED = 4011
# IDENTIFY's fields as Discord's gateway docs list them: name -> the JSON type(s) it takes.
IDENTIFY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "token": str,
    "properties": dict,
    "compress": bool,
    "large_threshold": int,
    "shard": list,
    "presence": dict,
    "intents": int,
}
IDENTIFY_REQUIRED = {"token", "properties", "intents"}
IDENTIFY_PROPERTIES = {"os", "browser", "device"}
LARGE_THRESHOLD = range(50, 251)


@dataclass(frozen=True)
class Sent:
    """One dispatch as a session received it."""

    session_id: str
    shard: tuple[int, int] | None
    event: str
    data: dict[str, Any]


@dataclass
class Session:
    """A gateway session: a shard of the bot (or all of it), on its latest socket."""

    id: str
    ws: web.WebSocketResponse
    shard: tuple[int, int] | None
    seq: int = 0
    sent: list[Sent] = field(default_factory=list)

    @classmethod
    def open(cls, ws: web.WebSocketResponse, shard: tuple[int, int] | None) -> Session:
        return cls(f"session-{snowflake()}", ws, shard)

    @property
    def live(self) -> bool:
        return not self.ws.closed

    def carries(self, guild_id: str | None) -> bool:
        """Whether Discord sends this guild's events down this session; events of no guild
        (direct messages) go down shard 0."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return (shard_of(guild_id, count) if guild_id else 0) == shard_id

    async def send(self, event: str, data: dict[str, Any]) -> Sent:
        self.seq += 1
        sent = Sent(self.id, self.shard, event, data)
        self.sent.append(sent)
        await self.ws.send_json({"op": 0, "t": event, "s": self.seq, "d": data})
        return sent


def identify_problem(data: Any) -> str | None:
    """What is wrong with an IDENTIFY's `d` by Discord's gateway docs, or None."""
    if not isinstance(data, dict):
        return f"IDENTIFY: d is {type(data).__name__}, not an object"
    if missing := IDENTIFY_REQUIRED - data.keys():
        return f"IDENTIFY: missing {sorted(missing)}"
    for key, value in data.items():
        kind = IDENTIFY_FIELDS.get(key)
        if kind is None:
            return f"IDENTIFY: unknown field {key!r}"
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"IDENTIFY: {key} is {value!r}"
    properties = data["properties"]
    if properties.keys() != IDENTIFY_PROPERTIES or not all(
        isinstance(v, str) for v in properties.values()
    ):
        return f"IDENTIFY: properties {properties!r} are not os, browser and device strings"
    if "large_threshold" in data and data["large_threshold"] not in LARGE_THRESHOLD:
        return f"IDENTIFY: large_threshold {data['large_threshold']} is outside 50-250"
    if "shard" in data and shard_pair(data["shard"]) is None:
        return f"IDENTIFY: shard {data['shard']!r} is not [shard_id, num_shards]"
    return None


def shard_pair(value: Any) -> tuple[int, int] | None:
    """IDENTIFY's `shard` as (id, count), or None when it is not two integers."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return value[0], value[1]
    return None
