"""The fake OpenAI's side of the wire: what it records of a request, and the deterministic
embeddings, token counts and broken connections it answers with."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import web

DEFAULT_DIMS = 256
WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None

    @property
    def api_key(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of a chat completion request."""
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


def embed(text: str, dims: int = DEFAULT_DIMS) -> list[float]:
    """A deterministic unit vector: hashed bag of words, so shared words mean nearby vectors."""
    vector = [0.0] * dims
    for word in WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest, "little") % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0  # an empty text still gets a valid unit vector
        return vector
    return [v / norm for v in vector]


def to_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def inputs(value: Any) -> list[str]:
    # The API accepts a string, a list of strings, a token list, or a list of token lists.
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(f"t{v}" for v in value)]
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(f"t{t}" for t in v) for v in value]
    return []


def tokens(text: str) -> int:
    return len(WORD.findall(text))


def usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(tokens(str(m.get("content", ""))) for m in body.get("messages", []))
    completion = tokens(text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def abort(request: web.Request) -> None:
    # Drop the connection without ending the chunked body: the client sees a broken stream.
    if request.transport is not None:
        request.transport.abort()
