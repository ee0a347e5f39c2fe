"""Reading a 429's wait the same way for the model endpoint, Slack and Discord."""

from __future__ import annotations

import email.utils
import time

import pytest

from bot.retry_after import retry_after


@pytest.mark.parametrize(
    ("headers", "first", "expected"),
    [
        ({"Retry-After": "7"}, (), 7.0),
        ({"retry-after": "2.5"}, (), 2.5),  # any case
        ({"Retry-After": ["3"]}, (), 3.0),  # slack_sdk's lists
        ({"retry-after-ms": "1500", "retry-after": "9"}, (), 1.5),  # the exact one first
        (
            {"X-RateLimit-Reset-After": "0.25", "Retry-After": "1"},
            ("X-RateLimit-Reset-After",),
            0.25,
        ),
        ({"Retry-After": "-4"}, (), 0.0),  # never negative
        ({}, (), None),
        ({"Retry-After": "soon"}, (), None),
    ],
)
def test_the_wait_a_429_asked_for(
    headers: dict[str, object], first: tuple[str, ...], expected: float | None
) -> None:
    assert retry_after(headers, first=first) == expected


def test_an_http_date_is_seconds_from_now() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after({"Retry-After": later})
    assert seconds is not None and 25 <= seconds <= 31
