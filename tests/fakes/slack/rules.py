"""Slack's rules as the fake Slack enforces them: sliding-window rate limits answered with 429 +
Retry-After (and calls made before that wait ran out, which Slack penalises), text and block
size limits, and the Web API's published methods and arguments (tests/specs)."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict, deque
from typing import Any

from tests.fakes.slack.state import blocks
from tests.fakes.spec_files import SPECS_DIR

SPECS = SPECS_DIR
MAX_TEXT = 4000  # Slack refuses longer chat.update text with msg_too_long
SECTION_LIMIT = 3000


class Window:
    """A sliding-window limit like Slack's: at most `rate` calls in `window` seconds.

    It also notes calls made before a Retry-After it gave had passed: Slack penalises apps
    that ignore it, so the bot must not do that."""

    EARLY_TOLERANCE = 0.05  # seconds: timer granularity, not a grace period
    # Calls already on their way when the 429 went out are not the bot ignoring it; on a busy
    # machine they can arrive this long after it.
    IN_FLIGHT_GRACE = 0.3

    def __init__(self, rate: int, window: float) -> None:
        self.rate, self.window = rate, window
        self.times: dict[str, deque[float]] = defaultdict(deque)
        self.blocked: dict[str, tuple[float, float]] = {}  # key -> (429 given at, until)
        self.early: list[str] = []

    def retry_after(self, key: str) -> float | None:
        now = time.monotonic()
        given, until = self.blocked.get(key, (0.0, 0.0))
        if given + self.IN_FLIGHT_GRACE < now < until - self.EARLY_TOLERANCE:
            self.early.append(key)
        seen = self.times[key]
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.rate:
            # Tenths of a second keep tests fast; Slack itself sends whole seconds.
            wait = max(0.1, math.ceil((seen[0] + self.window - now) * 10) / 10)
            if now >= until:  # a new block; 429s during one keep its start
                self.blocked[key] = (now, now + wait)
            return wait
        seen.append(now)
        return None


def load_spec() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Known and required arguments per method, from the Swagger file and slack-methods/."""
    known: dict[str, set[str]] = defaultdict(set)
    required: dict[str, set[str]] = defaultdict(set)
    swagger = json.loads((SPECS / "slack-web-openapi-v2.json").read_text())
    for path, verbs in swagger["paths"].items():
        for operation in verbs.values():
            for param in operation.get("parameters", []):
                if param["name"] == "token":
                    continue  # the SDK sends it as Authorization: Bearer
                known[path.lstrip("/")].add(param["name"])
                if param.get("required"):
                    required[path.lstrip("/")].add(param["name"])
    for file in (SPECS / "slack-methods").glob("*.json"):
        doc = json.loads(file.read_text())
        method = file.stem
        for name, arg in (doc.get("args") or {}).items():
            if name == "token":
                continue
            known[method].add(name)
            if arg.get("required"):
                required[method].add(name)
        known.setdefault(method, set())
    return dict(known), dict(required)


def spec_problems(
    known: dict[str, set[str]],
    required: dict[str, set[str]],
    method: str,
    args: dict[str, Any],
    team_id: str | None,
) -> list[str]:
    """What breaks the spec in a call: an unknown method, a missing or unknown argument."""
    if method not in known:
        return [f"{method}: not a Slack Web API method"]
    found = [
        f"{method}: required argument {name} missing"
        for name in sorted(required.get(method, set()) - set(args))
    ]
    # slack_sdk adds the workspace's team_id to every call of a client made for one
    # workspace (Slack accepts it everywhere, and org-wide tokens need it): it must match.
    found += [
        f"{method}: unknown argument {name}"
        for name in sorted(set(args) - known[method] - {"team_id"})
    ]
    if "team_id" in args and team_id is not None and args["team_id"] != team_id:
        found.append(f"{method}: team_id {args['team_id']} with {team_id}'s token")
    return found


def content_error(args: dict[str, Any], max_text: int) -> str | None:
    """The error Slack answers a message's text or blocks with, or None if they are fine."""
    text = str(args.get("text") or "")
    found = blocks(args.get("blocks"))
    if not text and not found:
        return "no_text"
    if len(text) > max_text:
        return "msg_too_long"
    for block in found or []:
        if block.get("type") != "section":
            continue
        section = (block.get("text") or {}).get("text")
        if not 0 < len(section or "") <= SECTION_LIMIT:
            return "invalid_blocks"
    return None
