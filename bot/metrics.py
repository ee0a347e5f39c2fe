"""The process's Prometheus metrics: one registry per core, the series `/metrics` shows, and the
surface wrapper that counts each platform's writes and 429s.

The registry is the core's own, not prometheus_client's global one, so tests can run several
cores in one process. Labels are bounded by construction: platform names, outcomes, error kinds,
budget priorities; never a workspace, channel or user id (`platform_of` folds anything it does
not know into "other"), so /metrics says how the bot is doing and nothing about who uses it.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from bot.errors import ModelError, PlatformRateLimited
from bot.streaming.budget import Priority
from bot.surface import BudgetSpec, Final, PassThroughSurface, Surface

PLATFORMS = ("slack", "discord", "web", "cli")
OUTCOMES = ("done", "failed", "cancelled", "refused")
WRITE_KINDS = ("post", "edit")
MODEL_CALLS = ("answer", "condense")
# One per class of bot.errors' ModelError branch, in snake case; "model_error" for the base.
MODEL_ERROR_KINDS = (
    "invalid_api_key",
    "rate_limited",
    "model_unavailable",
    "model_timeout",
    "model_error",
)

# Seconds. A person watches the first text arrive; the rest are waits inside an answer.
FIRST_TEXT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
BUDGET_WAIT_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
RETRIEVAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


def platform_of(key: str) -> str:
    """The platform a thread key, workspace or budget key belongs to (`slack:T1:…` -> slack)."""
    head = key.split(":", 1)[0]
    return head if head in PLATFORMS else "other"


def model_error_kind(error: ModelError) -> str:
    name = type(error).__name__
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return snake if snake in MODEL_ERROR_KINDS else "model_error"


class Metrics:
    """Every series the bot exposes, registered in a registry of its own."""

    def __init__(self) -> None:
        # No `_created` series beside each counter and histogram: they double the output and
        # Prometheus' text format has no use for them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.answers = Counter(
            "answerbot_answers",
            "Answers ended, by platform and outcome (done, failed, cancelled, refused).",
            ["platform", "outcome"],
            registry=r,
        )
        self.in_progress = Gauge(
            "answerbot_answers_in_progress", "Answers being written now.", ["platform"], registry=r
        )
        self.first_text = Histogram(
            "answerbot_first_text_seconds",
            "From the question reaching the core to the first write showing answer text.",
            ["platform"],
            buckets=FIRST_TEXT_BUCKETS,
            registry=r,
        )
        self.writes = Counter(
            "answerbot_platform_writes",
            "Posts and edits the platform accepted.",
            ["platform", "kind"],
            registry=r,
        )
        self.rate_limited = Counter(
            "answerbot_platform_rate_limited",
            "Writes the platform refused with a 429.",
            ["platform"],
            registry=r,
        )
        self.budget_wait = Histogram(
            "answerbot_budget_wait_seconds",
            "How long a write waited for its rate budget, by the write's priority.",
            ["platform", "priority"],
            buckets=BUDGET_WAIT_BUCKETS,
            registry=r,
        )
        self.model_errors = Counter(
            "answerbot_model_errors",
            "Model calls that failed, by kind of failure.",
            ["kind"],
            registry=r,
        )
        self.model_seconds = Histogram(
            "answerbot_model_seconds",
            "Model calls from request to last token (or failure): the answer, a follow-up's "
            "rewrite.",
            ["call"],
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.model_first_token = Histogram(
            "answerbot_model_first_token_seconds",
            "From the answer's model request to its first text token.",
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.retrieval_seconds = Histogram(
            "answerbot_retrieval_seconds",
            "Searching the knowledge index for one question.",
            buckets=RETRIEVAL_BUCKETS,
            registry=r,
        )
        self._zeros()

    def _zeros(self) -> None:
        """Every counter's series from the start at 0, so a rate() over the first event works
        and a dashboard shows 0 instead of no data."""
        for platform in PLATFORMS:
            for outcome in OUTCOMES:
                self.answers.labels(platform, outcome)
            for kind in WRITE_KINDS:
                self.writes.labels(platform, kind)
            self.rate_limited.labels(platform)
        for kind in MODEL_ERROR_KINDS:
            self.model_errors.labels(kind)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def budget_waited(self, spec: BudgetSpec, priority: Priority, seconds: float) -> None:
        self.budget_wait.labels(platform_of(spec.key), priority.name.lower()).observe(seconds)

    def model_failed(self, error: ModelError) -> None:
        self.model_errors.labels(model_error_kind(error)).inc()

    def count(self, surface: Surface, platform: str) -> Surface:
        """`surface`, counting the writes it lands and the 429s it gets under `platform`."""
        return _Counted(surface, self, platform)


class _Counted(PassThroughSurface):
    """A surface that counts its writes; everything else passes through unchanged."""

    def __init__(self, inner: Surface, metrics: Metrics, platform: str) -> None:
        super().__init__(inner)
        self._post = metrics.writes.labels(platform, "post")
        self._edit = metrics.writes.labels(platform, "edit")
        self._limited = metrics.rate_limited.labels(platform)

    async def post(self, text: str, *, final: Final | None = None) -> str:
        try:
            message_id = await self._inner.post(text, final=final)
        except PlatformRateLimited:
            self._limited.inc()
            raise
        self._post.inc()
        return message_id

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        try:
            await self._inner.edit(message_id, text, final=final)
        except PlatformRateLimited:
            self._limited.inc()
            raise
        self._edit.inc()
