"""What the fake OpenAI answers: a `Reply` streamed or returned whole, a `Failure` in OpenAI's
error shape, or a function of the request body choosing one; queued per endpoint, in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_REPLY = ("This", " is", " the", " fake", " model's", " answer", " [1].")


@dataclass
class Reply:
    """What one chat completion answers.

    `fail_after=n` closes the connection after n content chunks (mid-stream failure);
    `stall_after=n` waits `stall` seconds (or until `release()`) before content chunk n
    (n == len(chunks) stalls before the final chunk); `interval` paces every content chunk.
    `on_chunk(n)` is called as content chunk n has been written (benchmarks time the stream).
    """

    chunks: Sequence[str] = DEFAULT_REPLY
    fail_after: int | None = None
    stall_after: int | None = None
    stall: float = 0.0
    interval: float = 0.0
    finish_reason: str = "stop"
    on_chunk: Callable[[int], None] | None = None


@dataclass
class Failure:
    """An error response in OpenAI's shape."""

    status: int
    code: str | None = None
    message: str = "The fake was told to fail this request."
    type: str = "invalid_request_error"
    retry_after: int | None = None  # the spec allows whole seconds >= 1

    def to_json(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.type, "param": None, "code": self.code}
        }


Script = Reply | Failure | Callable[[dict[str, Any]], "Reply | Failure | Sequence[str]"]


@dataclass
class Queues:
    """What the next requests to each endpoint get, before the fake's default."""

    chat: deque[Script] = field(default_factory=deque)
    embeddings: deque[Failure] = field(default_factory=deque)
    models: deque[Failure] = field(default_factory=deque)


def outcome(script: Script, body: dict[str, Any]) -> Reply | Failure:
    """What a script answers to this chat request (a bare list of chunks is a Reply)."""
    result = script(body) if callable(script) else script
    if not isinstance(result, Reply | Failure):
        result = Reply(chunks=tuple(result))
    return result


def error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def model_not_found(model: str) -> Failure:
    return Failure(
        404,
        "model_not_found",
        f"The model `{model}` does not exist or you do not have access to it.",
    )
