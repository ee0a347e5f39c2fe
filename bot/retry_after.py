"""How long a 429 asked us to wait, read the same way whoever sent it: the model endpoint (openai),
Slack (slack_sdk) or Discord (aiohttp), whose headers come as different mapping types."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping, Sequence
from typing import Any


def retry_after(headers: Mapping[str, Any], *, first: Sequence[str] = ()) -> float | None:
    """Seconds to wait: the headers named in `first` (seconds), then Retry-After-Ms, then
    Retry-After (seconds, or an HTTP date); None when no header says. Names match in any case."""
    values = {str(name).lower(): _one(value) for name, value in headers.items()}
    for name, scale in [(name, 1.0) for name in first] + [("retry-after-ms", 0.001)]:
        seconds = _number(values.get(name.lower()))
        if seconds is not None:
            return max(0.0, seconds * scale)
    value = values.get("retry-after")
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when else None


def _one(value: Any) -> str:
    # slack_sdk gives some headers as lists of values.
    return str(value[0] if isinstance(value, list) and value else value)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
