"""From one run's records to the figures the README reports, and the floor they are held to.

The floor is a lower bound for any bot under the platform's own limits: every write lands the
instant the limit permits (zero latency), no placeholder is spent at all, and only the writes
no streaming design can avoid are made: the first text when the first token arrives, on
whichever of the two limits it may use (a new message on the post limit, an edit on the edit
limit) frees up first, and the final text when the last token arrives (merged into the first
write if that could only go out after the answer ended). Limits are sliding windows, as the
platforms enforce them, so the floor may burst up to a window's worth of calls.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.e2e.common import Conversation


def pct(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class _Windows:
    """Places calls on sliding-window limits ("no `window` seconds hold more than `rate`
    calls"), each as early as it legally can go among those already placed."""

    def __init__(self, budgets: dict[str, tuple[int, float]]) -> None:
        self.budgets = budgets
        self.placed: dict[str, list[float]] = defaultdict(list)  # sorted

    def _legal(self, times: list[float], at: float, rate: int, window: float) -> bool:
        # Every window [s, s + window) that would contain `at` must hold fewer than `rate`;
        # the fullest starts just after `at - window` or at one of the calls before `at`.
        lo = bisect.bisect_right(times, at - window)
        starts = [
            math.nextafter(at - window, math.inf),
            *times[lo : bisect.bisect_right(times, at)],
        ]
        for start in starts:
            held = bisect.bisect_left(times, start + window) - bisect.bisect_left(times, start)
            if held >= rate:
                return False
        return True

    def earliest(self, key: str, ready: float) -> float:
        if not key or key not in self.budgets:
            return ready  # no limit on this call (Discord's interaction responses, say)
        rate, window = self.budgets[key]
        times = self.placed[key]
        # The answer is `ready` or the moment some placed call leaves a window.
        lo = bisect.bisect_right(times, ready - window)
        for at in [ready, *(t + window for t in times[lo:] if t + window > ready)]:
            if self._legal(times, at, rate, window):
                return at
        return max(times[-1] + window, ready)

    def grant(self, key: str, ready: float) -> float:
        at = self.earliest(key, ready)
        if key and key in self.budgets:
            bisect.insort(self.placed[key], at)
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
    # Every write in the order it becomes possible; a final becomes possible after its first.
    queue: list[tuple[float, int, str]] = [
        (c.first_token or 0.0, qid, "first") for qid, c in by_id.items()
    ]
    heapq.heapify(queue)
    while queue:
        ready, qid, kind = heapq.heappop(queue)
        conv = by_id[qid]
        assert conv.last_token is not None
        if kind == "final":
            final[qid] = windows.grant(conv.edit_key, ready)
            continue
        by_post = windows.earliest(conv.post_key, ready)
        by_edit = windows.earliest(conv.edit_key, ready)
        at = windows.grant(conv.post_key if by_post <= by_edit else conv.edit_key, ready)
        first[qid] = at
        if at >= conv.last_token:
            final[qid] = at  # that write carried the whole answer
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
    # An answer that never showed text (or never its whole text) by the deadline counts as
    # infinitely late, so a bot that loses answers cannot look faster for it.
    shown = [
        c.first_visible - c.first_token
        if c.first_visible is not None and c.first_token is not None
        else math.inf
        for c in conversations
    ]
    shown_floor = [
        best.first_visible[c.qid] - c.first_token
        for c in conversations
        if c.qid in best.first_visible and c.first_token is not None
    ]
    to_final = [
        c.final - c.asked if c.final is not None and c.exact else math.inf for c in conversations
    ]
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
        "first_visible_missing": sum(1 for v in shown if math.isinf(v)),
        "to_final_p50": pct(to_final, 0.5),
        "to_final_p95": pct(to_final, 0.95),
        "to_final_max": max(to_final, default=math.nan),
        "to_final_max_delivered": max((v for v in to_final if math.isfinite(v)), default=math.nan),
        # Over the answers that did arrive: the naive baseline's speed, apart from its losses.
        "to_final_delivered_p50": pct([v for v in to_final if math.isfinite(v)], 0.5),
        "to_final_delivered_p95": pct([v for v in to_final if math.isfinite(v)], 0.95),
        "first_visible_delivered_p50": pct([v for v in shown if math.isfinite(v)], 0.5),
        "first_visible_delivered_p95": pct([v for v in shown if math.isfinite(v)], 0.95),
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
