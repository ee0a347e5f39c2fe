"""The fake OpenAI's traffic checked against OpenAI's published OpenAPI description: each check
returns what broke, in a line for the fake's `violations`, or None."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

VIOLATION_CHARS = 600  # enough of a validation error to see what broke


def _spec() -> Any:
    # Imported on first use: the benchmark process can run the fake without openapi-core.
    from tests.fakes.openai import spec

    return spec


def problem(where: str, check: Callable[[], None]) -> str | None:
    try:
        check()
    except Exception as err:
        detail = f"{type(err).__name__}: {err}"
        if err.__cause__ is not None:
            detail += f" ({err.__cause__})"
        return f"{where}: {detail[:VIOLATION_CHARS]}"
    return None


def request_problem(method: str, path: str, raw: bytes, headers: dict[str, str]) -> str | None:
    return problem(
        f"request {method} {path}",
        lambda: _spec().check_request(method, path, raw or None, headers),
    )


def chunk_problem(chunk: dict[str, Any]) -> str | None:
    return problem(
        "stream chunk", lambda: _spec().check_schema("CreateChatCompletionStreamResponse", chunk)
    )


def response_problem(payload: dict[str, Any], path: str, method: str, status: int) -> str | None:
    spec = _spec()
    raw = json.dumps(payload).encode()
    return problem(
        f"response {method.upper()} {path}",
        lambda: spec.check_response(spec.request_for(method, path, None), status, raw),
    )


def error_problems(
    payload: dict[str, Any], status: int, spec_path: str | None, headers: dict[str, str]
) -> list[str]:
    """The error body against ErrorResponse; a 429 also against the path's own 429 response."""
    found = [problem(f"error {status}", lambda: _spec().check_schema("ErrorResponse", payload))]
    if status == 429 and spec_path is not None:
        spec = _spec()
        raw = json.dumps(payload).encode()
        found.append(
            problem(
                f"429 from {spec_path}",
                lambda: spec.check_response(
                    spec.request_for("post", spec_path, None), 429, raw, headers=headers
                ),
            )
        )
    return [p for p in found if p is not None]
