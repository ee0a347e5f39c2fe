"""Logging for the bot: one format, and the one mechanism that keeps secrets out of log output.

`known_secrets` is the process's single registry of secret values: Settings' SecretStr values are
added at start, every API key when it is set or decrypted, the generated master secret when it is
loaded. The handler's `RedactingFilter` masks those values and secret-shaped strings (keys and
tokens of the usual providers) in every record's message, traceback and stack. Adapters keep keys
out of what they log; this is the second line of defence for a key that reaches a log line by
accident (a library's debug dump, an exception text).

With LOG_FORMAT=json each record is one JSON object on one line (`JsonLogFormatter`): time,
level, logger, message, the exception's traceback if any, and the record's extra fields, every
one of them redacted the same way before it is serialised.

Two adapter filters stay outside it because they do a different job: they remove *structure* from
a platform library's DEBUG dumps (a Discord modal's values, Slack's request payloads) where a key
typed into /setkey appears before it is validated and registered, and may have any shape.
Recognising those payloads is platform knowledge, which the core does not hold.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import datetime
from typing import Any

from pydantic import SecretStr
from pythonjsonlogger.json import JsonFormatter

from bot.settings import Settings

REDACTED = "[redacted]"
WITHHELD = "[log record withheld: it could not be rendered safely]"
# Shorter values are too likely to be ordinary words or numbers to mask wherever they appear
# (the test suites' "secret" SECRET_KEY values are one to four characters).
MIN_SECRET_LENGTH = 8

# Shapes worth masking wherever they appear, whoever's they are.
SECRET_SHAPES = re.compile(
    "|".join(
        (
            r"\bsk-[A-Za-z0-9_\-]{8,}",  # OpenAI and look-alikes: sk-..., sk-proj-..., sk-ant-...
            r"\bgsk_[A-Za-z0-9]{20,}",  # Groq
            r"\bAIza[0-9A-Za-z_\-]{35}",  # Google API keys
            r"\bxox[abeoprs]-[A-Za-z0-9\-]{8,}",  # Slack bot, user, refresh and config tokens
            r"\bxapp-[A-Za-z0-9\-]{8,}",  # Slack app-level tokens (Socket Mode)
            # Discord bot tokens: base64url(user id).timestamp.hmac; a snowflake's first digit
            # makes the first character M, N or O.
            r"\b[MNO][A-Za-z0-9_\-]{22,27}\.[A-Za-z0-9_\-]{6,7}\.[A-Za-z0-9_\-]{27,}",
            r"\b[0-9A-Fa-f]{32,}\b",  # long hex keys (and, as a price paid, long hex digests)
            r"(?<=[Bb]earer )[A-Za-z0-9\-._~+/]{8,}=*",  # any token in an Authorization header
        )
    )
)


class SecretRegistry:
    """Secret values to mask in log output; safe to add to while other threads log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Replaced whole under the lock, read without it: a reader always sees a complete tuple.
        self._values: tuple[str, ...] = ()

    def add(self, *values: str | None) -> None:
        fresh = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
        with self._lock:
            if fresh <= set(self._values):
                return
            # Longest first, so a secret that contains another is masked whole.
            self._values = tuple(sorted(fresh.union(self._values), key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values = ()

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def redact(self, text: str) -> str:
        for secret in self._values:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return SECRET_SHAPES.sub(REDACTED, text)


known_secrets = SecretRegistry()


def register_secret(*values: str | None) -> None:
    """Mask these values in every log line from now on (a key just set, decrypted or loaded)."""
    known_secrets.add(*values)


def redact(text: str) -> str:
    """`text` with every known secret and secret-shaped string masked."""
    return known_secrets.redact(text)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, traceback and stack; never raises into the caller.

    The record is rendered here, once, and left holding only redacted text (msg without args,
    exc_text without exc_info), so no formatter can later render the raw values again.
    """

    def __init__(self, registry: SecretRegistry = known_secrets) -> None:
        super().__init__()
        self._registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact(record)
        except Exception:
            # A value whose str() or repr() raises, a traceback that can't be formatted: drop
            # the content rather than let it through raw, and keep the caller running.
            record.msg, record.args = WITHHELD, None
            record.exc_info = record.exc_text = record.stack_info = None
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        redact = self._registry.redact
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # A call whose arguments don't fit its format, e.g. log.info("%s %s", one): logging
            # would raise from here into the caller. Show the parts instead.
            message = f"{record.msg!s} (log arguments did not fit the format: {record.args!r})"
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(message), None
        record.exc_info, record.exc_text = None, redact(exc_text) if exc_text else None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)


def settings_secrets(settings: Settings) -> list[str]:
    """Every SecretStr value of the settings (a new secret field is covered without a list)."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The JSON object's keys, in order; the record's extra fields follow under their own names.
JSON_FIELDS = "{levelname}{name}{message}"
JSON_NAMES = {"levelname": "level", "name": "logger", "exc_info": "exception"}


class JsonLogFormatter(JsonFormatter):
    """One JSON object per record (python-json-logger), each value redacted: the filter has
    already masked the message and traceback, but extra fields reach the output only here,
    and a value that is no JSON scalar is written as its redacted str()."""

    def __init__(self, registry: SecretRegistry = known_secrets) -> None:
        super().__init__(JSON_FIELDS, style="{", rename_fields=JSON_NAMES, timestamp="time")
        self._registry = registry

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        time = log_data.pop("time", None)  # added last by the library; shown first
        safe = {key: self._safe(value) for key, value in log_data.items()}
        return {"time": time.isoformat() if isinstance(time, datetime) else time, **safe}

    def _safe(self, value: object) -> object:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {str(k): self._safe(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._safe(item) for item in value]
        return self._registry.redact(value if isinstance(value, str) else str(value))


def formatter(log_format: str) -> logging.Formatter:
    """The formatter LOG_FORMAT names: text (one readable line) or json."""
    return JsonLogFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(settings: Settings) -> None:
    register_secret(*settings_secrets(settings))
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings.log_format))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Third-party debug output includes request bodies (slash-command text, modal values).
    for noisy in ("discord.gateway", "slack_bolt", "slack_sdk", "aiohttp.access", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
