"""Logging for the bot: one format, and a filter that redacts secrets from every record.

Adapters already keep keys out of what they log; this is the second line of defence, so a key or
token that reaches a log line by accident (a library's debug dump, an exception text) is masked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from bot.settings import Settings

REDACTED = "[redacted]"
# OpenAI-style keys, Slack tokens, Discord bot tokens: shapes worth masking wherever they appear.
SECRET_PATTERNS = re.compile(
    r"\b(?:sk-[A-Za-z0-9_\-]{8,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{8,}"
    r"|xapp-[A-Za-z0-9\-]{8,}"
    r"|[MN][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,})"
)


class RedactingFilter(logging.Filter):
    """Masks known secret values and secret-shaped strings in a record's final message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return SECRET_PATTERNS.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, redacted, instead of letting the formatter add it raw.
            clean += "\n" + self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, None
        return True


def settings_secrets(settings: Settings) -> list[str]:
    values = [
        settings.openai_api_key,
        settings.secret_key,
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.slack_client_secret,
        settings.discord_token,
    ]
    return [v.get_secret_value() for v in values if v is not None]


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(settings_secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Third-party debug output includes request bodies (slash-command text, modal values).
    for noisy in ("discord.gateway", "slack_bolt", "slack_sdk", "aiohttp.access", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
