"""From one run's records to the figures the README reports, and the floor they are held to.

The floor is what the platform's own limits allow with no bot overhead at all: every write
lands the instant the limit permits (zero latency), and only the writes no streaming design can
avoid are made: the placeholder when the question arrives (it carries the text if the first
token came first), the first text when the first token arrives, the final text when the last
token arrives (merged into the first-text write if that could only go out after the answer had
ended). Limits are sliding windows, as the platforms enforce them, so the floor may burst up to
a window's worth of calls.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from bench.e2e.common import Conversation


def pct(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class _Windows:
    """Grants calls on sliding-window limits, earliest first."""

    def __init__(self, budgets: dict[str, tuple[int, float]]) -> None:
        self.budgets = budgets
        self.granted: dict[str, deque[float]] = defaultdict(deque)

    def grant(self, key: str, ready: float) -> float:
        if not key or key not in self.budgets:
            return ready  # no limit on this call (Discord's interaction responses, say)
        rate, window = self.budgets[key]
        recent = self.granted[key]
        at = ready
        if len(recent) >= rate:
            at = max(at, recent[-rate] + window)
        recent.append(at)
        return at


@dataclass
class Floor:
    first_visible: dict[int, float]
    final: dict[int, float]


def floor(conversations: list[Conversation], budgets: dict[str, tuple[int, float]]) -> Floor:
    """When each answer's first text and final text could be visible at the soonest."""
    windows = _Windows(budgets)
    by_id = {c.qid: c for c in conversations if c.first_token and c.last_token}
    first: dict[int, float] = {}
    final: dict[int, float] = {}
    # Every write in the order it becomes possible, so calls sharing a limit are granted in time
    # order whatever their kind; a first text waits for its placeholder, a final for its first.
    queue = [(c.asked, qid, "placeholder") for qid, c in by_id.items()]
    heapq.heapify(queue)
    while queue:
        ready, qid, kind = heapq.heappop(queue)
        conv = by_id[qid]
        assert conv.first_token is not None and conv.last_token is not None
        if kind == "final":
            final[qid] = windows.grant(conv.edit_key, ready)
            continue
        key = conv.post_key if kind == "placeholder" else conv.edit_key
        at = windows.grant(key, ready)
        if kind == "placeholder" and at < conv.first_token:
            heapq.heappush(queue, (conv.first_token, qid, "first"))
            continue
        first[qid] = at  # this write carried text
        if at >= conv.last_token:
            final[qid] = at  # ... all of it
        else:
            heapq.heappush(queue, (conv.last_token, qid, "final"))
    return Floor(first, final)


def allowed_calls(budgets: dict[str, tuple[int, float]], keys: set[str], duration: float) -> int:
    """The most calls these limits let through in `duration` seconds."""
    total = 0
    for key in keys:
        if key in budgets:
            rate, window = budgets[key]
            total += rate * math.ceil(max(duration, 1e-9) / window)
    return total


def summarize(
    result: dict[str, Any],
    conversations: list[Conversation],
    *,
    cpu_seconds: float,
    peak_rss_mb: float,
) -> dict[str, Any]:
    """One row of figures for one (platform, bot, concurrency) run."""
    budgets = {k: (int(v[0]), float(v[1])) for k, v in result["budgets"].items()}
    best = floor(conversations, budgets)
    acks = [c.acked - c.asked for c in conversations if c.acked is not None]
    shown = [
        c.first_visible - c.first_token
        for c in conversations
        if c.first_visible is not None and c.first_token is not None
    ]
    shown_floor = [
        best.first_visible[c.qid] - c.first_token
        for c in conversations
        if c.qid in best.first_visible and c.first_token is not None
    ]
    to_final = [c.final - c.asked for c in conversations if c.final is not None and c.exact]
    to_final_floor = [best.final[c.qid] - c.asked for c in conversations if c.qid in best.final]
    tokens = sum(int(c.extra.get("tokens", 0)) for c in conversations)
    edit_keys = {c.edit_key for c in conversations if c.edit_key}
    calls: dict[str, int] = result["calls"]
    duration = result["ended"] - result["started"]
    used = sum(calls.get(k, 0) for k in edit_keys)
    exact = sum(c.exact for c in conversations)
    return {
        "conversations": len(conversations),
        "ack_p50": pct(acks, 0.5),
        "ack_p99": pct(acks, 0.99),
        "first_visible_p50": pct(shown, 0.5),
        "first_visible_p95": pct(shown, 0.95),
        "first_visible_floor_p50": pct(shown_floor, 0.5),
        "first_visible_floor_p95": pct(shown_floor, 0.95),
        "first_visible_missing": len(conversations) - len(shown),
        "to_final_p50": pct(to_final, 0.5),
        "to_final_p95": pct(to_final, 0.95),
        "to_final_max": max(to_final, default=math.nan),
        "to_final_floor_p50": pct(to_final_floor, 0.5),
        "to_final_floor_p95": pct(to_final_floor, 0.95),
        "to_final_floor_max": max(to_final_floor, default=math.nan),
        "edit_calls": used,
        "edit_calls_allowed": allowed_calls(budgets, edit_keys, duration),
        "writes": sum(c.writes for c in conversations),
        "rate_limited": result["rate_limited"],
        "rate_limited_by_key": result.get("rate_limited_by_key", {}),
        "retry_after_violations": result["early"],
        "exact": exact,
        "tokens": tokens,
        "cpu_seconds": cpu_seconds,
        "cpu_s_per_1k_tokens": cpu_seconds / tokens * 1000 if tokens else math.nan,
        "peak_rss_mb": peak_rss_mb,
        "duration": duration,
        "violations": result.get("violations", []),
    }
