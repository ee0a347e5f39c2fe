"""A loopback Discord that the real discord.py talks to: REST API and gateway, with state.

It keeps the messages the bot posts and edits, answers interactions, enforces Discord's per-channel
create/edit budget with 429s shaped like Discord's, speaks the gateway handshake (HELLO, IDENTIFY,
READY, GUILD_CREATE), one session per shard, and lets tests dispatch INTERACTION_CREATE and
MESSAGE_CREATE down the session carrying the guild. Every REST request is checked against Discord's
published OpenAPI spec (`tests/specs/discord-openapi.json`, a copy of ../shared/specs); tests
assert `violations` stays empty.

    server.py    FakeDiscord: the aiohttp app, REST checking, recording and routing
    writes.py    what the bot's writes do: messages, interaction callbacks, commands, threads,
                 and the interaction token's 15 minutes (`token_lifetime`: later writes get 401)
    gateway.py   the gateway handshake, and people's slash commands, clicks and messages
    people.py    message commands ("Ask about this message"), forum posts, messages the bot
                 can't see (DMs of others, servers that only have the app user-installed)
    sessions.py  one session per IDENTIFY (a shard, or the whole bot): the guilds it carries,
                 what it was sent, and the checks of IDENTIFY itself
    state.py     users, guilds, channels, messages, interactions, what was requested
    rules.py     the channel budget and its 429s, allowed mentions, the length limit, the flags
                 each write may set, the links Discord's crawler previews
    payloads.py  Discord objects as discord.py reads them; spec.py checks against the spec
"""

from tests.fakes.discord.gateway import HEARTBEAT_INTERVAL_MS, MESSAGE_CONTENT_INTENT
from tests.fakes.discord.payloads import MEMBER_PERMISSIONS, TIMESTAMP
from tests.fakes.discord.rules import (
    ACK_DEADLINE_SECONDS,
    EPHEMERAL,
    MANAGE_GUILD,
    SUPPRESS_EMBEDS,
)
from tests.fakes.discord.server import API_PREFIX, FakeDiscord
from tests.fakes.discord.sessions import MAX_GUILDS_PER_SHARD, Sent, Session
from tests.fakes.discord.state import (
    FAKE_TOKEN,
    Guild,
    Interaction,
    MessageWrite,
    RestCall,
    shard_of,
    snowflake,
)
from tests.fakes.discord.writes import DEFAULT_ARCHIVE_MINUTES

__all__ = [
    "ACK_DEADLINE_SECONDS",
    "API_PREFIX",
    "DEFAULT_ARCHIVE_MINUTES",
    "EPHEMERAL",
    "FAKE_TOKEN",
    "HEARTBEAT_INTERVAL_MS",
    "MANAGE_GUILD",
    "MAX_GUILDS_PER_SHARD",
    "MEMBER_PERMISSIONS",
    "MESSAGE_CONTENT_INTENT",
    "SUPPRESS_EMBEDS",
    "TIMESTAMP",
    "FakeDiscord",
    "Guild",
    "Interaction",
    "MessageWrite",
    "RestCall",
    "Sent",
    "Session",
    "shard_of",
    "snowflake",
]
