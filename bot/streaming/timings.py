"""When things happened to one streamed answer, in the editor's clock time: what the benchmarks
read and the logs report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Timings:
    """When things happened to one answer, in clock time (for the benchmark and logs)."""

    started: float | None = None
    first_delta: float | None = None
    first_post: float | None = None
    first_text: float | None = None  # the first write showing any of the answer landed
    ended: float | None = None  # finish/fail/cancel was called
    final: float | None = None  # the final write landed
    writes: int = 0
    given_up: int = 0
    retried: int = 0  # tries that failed in an outage and were made again
    reposted: int = 0  # ends posted as a new message because the last couldn't be edited
    refused: list[str] = field(default_factory=list)
