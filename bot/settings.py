"""The one typed configuration of the bot, read from the environment first and then `.env`.

Built once at start (`Settings()`) and passed down; nothing reads configuration at import time.
Every field is documented in `.env.example`, and a test keeps the two in step.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_ids(value: object) -> object:
    # Lists arrive from the environment as "1,2, 3"; pydantic would expect JSON otherwise.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int):
        return [str(value)]
    return value


MIN_WEB_PASSWORD_CHARS = 8
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _host_name(value: object) -> str:
    # Compared with the name part of a request's Host header, so no scheme, port or path.
    name = str(value).strip().lower()
    bare = name.removeprefix("[").removesuffix("]")
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(bare))
    if not _HOST_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a host name: give names like chat.example.com, no port")
    return name


# Slack team (T…) and Enterprise Grid org (E…) ids; Discord guild ids are snowflakes.
SLACK_TEAM = re.compile(r"[TE][A-Z0-9]{2,}")
DISCORD_GUILD = re.compile(r"[0-9]{5,20}")
# A workspace as the bot names it: slack:T1, slack:E1 (an org), slack:E1:T1, discord:123, web:local.
WORKSPACE = re.compile(
    r"slack:[TE][A-Z0-9]{2,}|slack:E[A-Z0-9]{2,}:T[A-Z0-9]{2,}|discord:[0-9]{5,20}|(web|cli):local"
)


def _ids(value: object, pattern: re.Pattern[str], example: str) -> object:
    found = _split_ids(value)
    if not isinstance(found, list):
        return found
    for item in found:
        if not pattern.fullmatch(str(item)):
            raise ValueError(f"{item!r} is not an id like {example}")
    return found


def _network(value: object) -> str:
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network like 10.0.0.0/8") from None


class Settings(BaseSettings):
    """Deployment settings; names match ../shared/DESIGN.md (deployments and tests rely on them)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # "OPENAI_API_KEY=" in .env means unset, not an empty key.
        env_ignore_empty=True,
        # An error names the setting and the problem, never the value: it may be a secret (a
        # DATABASE_URL with its password, a mistyped token).
        hide_input_in_errors=True,
    )

    # Where things live.
    data_dir: Path = Path("./data")
    # Unset: SQLite in DATA_DIR. A postgresql:// URL (libpq form; a socket directory as
    # ?host=/dir): PostgreSQL holds everything stateful, shared by replicas (bot/store/postgres.py).
    # Secret: the URL may hold a password.
    database_url: SecretStr | None = None
    # Unset: rate budgets and question limits live in each process. A redis://, rediss:// or
    # unix:// URL: replicas share them there (bot/shared.py). Secret: it may hold a password.
    redis_url: SecretStr | None = None
    knowledge_dir: Path = Path("./knowledge")
    # A document whose parsing takes longer is skipped, logged, and the rest still indexed
    # (bot/knowledge/parsing.py): a pathological PDF must not stall start-up.
    max_parse_seconds: float = Field(default=60.0, gt=0)

    # The model endpoint.
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    chat_model: str = "gpt-5.4-mini"
    embed_model: str = "text-embedding-3-small"
    # local: a model shipped inside a package embeds on this machine's CPU (no key, no endpoint);
    # openai: EMBED_MODEL at OPENAI_BASE_URL, with OPENAI_API_KEY for the documents.
    embed_provider: Literal["local", "openai"] = "local"
    # With DATABASE_URL, how keyword search runs (bot/knowledge/index.py): bm25: BM25 in each
    # replica's memory, rebuilt from the shared chunks when a new index is published; fulltext:
    # PostgreSQL's full-text search, nothing in memory (`python -m bench.knowledge_keywords`).
    keyword_search: Literal["bm25", "fulltext"] = "bm25"
    secret_key: SecretStr | None = None

    # The one HTTP server.
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)

    # Who may use the web chat (adapters/web/access.py). It answers only to loopback names, HOST
    # and these names (DNS rebinding); it asks for a login when HOST is not loopback or any of
    # these three is set; it believes X-Forwarded-Proto/-Host only from TRUSTED_PROXIES.
    web_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="extra Host names, e.g. a proxy's public name"
    )
    web_password: SecretStr | None = Field(
        default=None, description="the web chat's login instead of the token printed at start"
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="IP addresses or networks of reverse proxies"
    )

    # Slack.
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_admin_user_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Who may install and use the app (adapters/slack/allowed.py): team ids, and org ids meaning
    # every workspace of that Enterprise Grid org. Empty: every workspace.
    slack_allowed_teams: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Discord.
    discord_token: SecretStr | None = None
    discord_api_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg"
    discord_guild_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    discord_thread_per_question: bool = False
    # Privileged intent (enable it in the Developer Portal too): read follow-ups in the bot's
    # threads and reply chains that don't mention it. Off, only mentions are readable.
    discord_message_content: bool = False
    # Servers the bot serves; it leaves any other (adapters/discord/allowed.py). Empty: every one.
    discord_allowed_guilds: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Forum channels whose every new post the bot answers in the post (adapters/discord/answers.py).
    discord_forum_channels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # An interaction's token lets /ask write for 15 minutes: an answer still streaming this many
    # seconds after the question moves on into a channel message (adapters/discord/handover.py).
    discord_handover_seconds: float = Field(default=13 * 60.0, gt=0, lt=15 * 60.0)
    # Sharding (adapters/discord/shards.py): Discord requires it at 2,500 servers per shard. The
    # total number of shards, and the ones this process runs (unset: all of them). Both unset:
    # one connection without sharding.
    discord_shard_count: int | None = Field(default=None, ge=1)
    discord_shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # Whom OPENAI_API_KEY serves besides the documents' embeddings (bot/keys.py): all (every
    # workspace without its own key), embeddings (only the question's embedding: chat answers
    # need the workspace's own key) or listed (everything, for FALLBACK_KEY_WORKSPACES only).
    fallback_key_scope: Literal["all", "embeddings", "listed"] = "all"
    fallback_key_workspaces: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Questions a person (and a whole workspace) may ask per minute (bot/limits.py); 0: no limit.
    questions_per_minute_per_user: int = Field(default=6, ge=0)
    questions_per_minute_per_workspace: int = Field(default=60, ge=0)

    # Answers.
    retrieval_top_k: int = Field(default=5, ge=1, le=50)
    history_turns: int = Field(default=10, ge=0, le=100)
    max_question_chars: int = Field(default=4000, ge=100)
    answer_max_tokens: int = Field(default=1000, ge=16)
    model_context_tokens: int = Field(default=16000, ge=2000)
    llm_idle_timeout: float = Field(default=30.0, gt=0)
    llm_total_timeout: float = Field(default=300.0, gt=0)
    # At SIGTERM, answers in flight get this long to finish before they end with the
    # "interrupted" notice (systemd waits 90 s and Kubernetes 30 s before SIGKILL).
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)

    # Platform rate budgets the streaming editor spends (calls per window, window in seconds).
    slack_update_rate: int = Field(default=50, ge=1)
    slack_update_window: float = Field(default=60.0, gt=0)
    slack_post_rate: int = Field(default=1, ge=1)
    slack_post_window: float = Field(default=1.0, gt=0)
    # Slack's native streaming (chat.startStream/appendStream/stopStream) in DMs and assistant
    # threads: start and stop are Tier 2 (about 20 a minute per workspace each), appends Tier 4.
    slack_native_streaming: bool = True
    slack_stream_rate: int = Field(default=20, ge=1)
    slack_stream_window: float = Field(default=60.0, gt=0)
    slack_append_rate: int = Field(default=100, ge=1)
    slack_append_window: float = Field(default=60.0, gt=0)
    # A streamed message is cut before Slack ends it (~5 min) or caps it (~11k characters).
    slack_stream_rotate_seconds: float = Field(default=240.0, gt=0)
    slack_stream_rotate_chars: int = Field(default=9000, ge=500, le=11000)
    discord_edit_rate: int = Field(default=5, ge=1)
    discord_edit_window: float = Field(default=5.0, gt=0)

    # How long the database keeps things (bot/retention.py prunes at start and every
    # PRUNE_INTERVAL seconds); 0 keeps them for ever. Threads idle for RETENTION_DAYS go with
    # their messages and feedback, reply links that old too; event claims only guard against
    # redeliveries, which come within minutes, so they go after EVENT_RETENTION_HOURS.
    retention_days: int = Field(default=90, ge=0)
    event_retention_hours: int = Field(default=48, ge=0)
    prune_interval: float = Field(default=3600.0, gt=0)

    log_level: str = "INFO"
    # text: one readable line per event; json: one JSON object per line (bot/logs.py), for a
    # log collector that indexes fields.
    log_format: Literal["text", "json"] = "text"
    # GET /metrics (Prometheus' text format) on the one HTTP server. Off: a 404, for a server
    # whose port is public and where the operator would rather not firewall the path.
    metrics: bool = True

    @field_validator("slack_admin_user_ids", "discord_guild_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_ids(value)

    @field_validator("slack_allowed_teams", mode="before")
    @classmethod
    def _slack_teams(cls, value: object) -> object:
        return _ids(value, SLACK_TEAM, "T0123ABCD (a workspace) or E0123ABCD (a Grid org)")

    @field_validator("discord_allowed_guilds", mode="before")
    @classmethod
    def _discord_guilds(cls, value: object) -> object:
        return _ids(value, DISCORD_GUILD, "123456789012345678 (a server's id)")

    @field_validator("discord_forum_channels", mode="before")
    @classmethod
    def _discord_forums(cls, value: object) -> object:
        return _ids(value, DISCORD_GUILD, "123456789012345678 (a forum channel's id)")

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, value: object) -> object:
        found = _split_ids(value)
        if not isinstance(found, list):
            return found
        for item in found:
            if not str(item).isdigit():
                raise ValueError(f"{item!r} is not a shard id: give numbers like 0,1,2")
        ids = [int(item) for item in found]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{value!r} lists a shard twice")
        return ids

    @model_validator(mode="after")
    def _shards_within_the_count(self) -> Settings:
        ids, count = self.discord_shard_ids, self.discord_shard_count
        if ids and count is None:
            raise ValueError(
                "DISCORD_SHARD_IDS is set but DISCORD_SHARD_COUNT is not: set the total number "
                "of shards every process shares, e.g. DISCORD_SHARD_COUNT=4"
            )
        if count is not None and (beyond := [i for i in ids if i >= count]):
            raise ValueError(
                f"DISCORD_SHARD_IDS has {', '.join(map(str, beyond))}, but DISCORD_SHARD_COUNT="
                f"{count}: shard ids run from 0 to {count - 1}"
            )
        return self

    @field_validator("fallback_key_workspaces", mode="before")
    @classmethod
    def _workspaces(cls, value: object) -> object:
        return _ids(value, WORKSPACE, "slack:T0123ABCD, slack:E0123ABCD or discord:1234567890")

    @model_validator(mode="after")
    def _listed_only_when_scoped(self) -> Settings:
        # A list that nothing reads would look like a restriction that isn't there.
        if self.fallback_key_workspaces and self.fallback_key_scope != "listed":
            raise ValueError(
                "FALLBACK_KEY_WORKSPACES is set but FALLBACK_KEY_SCOPE is "
                f"{self.fallback_key_scope!r}: set FALLBACK_KEY_SCOPE=listed for the list to count"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Only the scheme is named back: the rest may hold a password.
        if value is None:
            return value
        scheme, found, _ = value.get_secret_value().partition("://")
        if not found:
            raise ValueError(
                "give a postgresql:// URL (postgresql://user:password@host:5432/dbname), "
                "or leave DATABASE_URL unset for SQLite in DATA_DIR"
            )
        if scheme.lower() not in ("postgresql", "postgres"):
            raise ValueError(
                f"a {scheme}:// URL is not a PostgreSQL database: give a postgresql:// URL "
                "(postgresql://user:password@host:5432/dbname), or leave DATABASE_URL unset "
                "for SQLite in DATA_DIR"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Only the scheme is named back: the rest may hold a password.
        if value is None:
            return value
        scheme, found, _ = value.get_secret_value().partition("://")
        if found and scheme.lower() in ("redis", "rediss", "unix"):
            return value
        named = f"a {scheme}:// URL is not Redis: " if found else ""
        raise ValueError(
            f"{named}give a redis:// URL (redis://:password@host:6379/0), rediss:// for TLS or "
            "unix:///path/redis.sock?db=0, or leave REDIS_URL unset to keep rate budgets and "
            "question limits in this process"
        )

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk joins method names onto the base URL, so it must end with "/".
        return value if value.endswith("/") else value + "/"

    @field_validator("openai_base_url", "discord_api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("web_allowed_hosts", mode="before")
    @classmethod
    def _host_names(cls, value: object) -> object:
        names = _split_ids(value)
        return [_host_name(name) for name in names] if isinstance(names, list) else names

    @field_validator("web_password")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_WEB_PASSWORD_CHARS:
            raise ValueError(f"use at least {MIN_WEB_PASSWORD_CHARS} characters")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        found = _split_ids(value)
        return [_network(item) for item in found] if isinstance(found, list) else found

    @property
    def database_path(self) -> Path:
        return self.data_dir / "bot.db"

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token or self.slack_client_id)

    @property
    def discord_enabled(self) -> bool:
        return self.discord_token is not None
