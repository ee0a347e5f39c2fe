"""Embedding models the eval compares with the bot's default (`LocalEmbedder`): each implements
the bot's `Embedder` protocol, so the eval runs them through the bot's real index.

- `minilm-first`: the default model reading only each passage's first window (half the work).
- `wordllama`: WordLlama l2_supercat 256-d static token embeddings, weights inside its wheel
  (loaded with downloads disabled, from the package's own folder). Not a bot dependency: the
  eval installs it when it is asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.knowledge.embeddings import (
    LocalEmbedder,
    Passage,
    PassageVectors,
    Vectors,
)


class MiniLMFirstWindow(LocalEmbedder):
    """The default model, but one window per passage: its title and first tokens."""

    windows_per_passage = 1

    @property
    def space(self) -> dict[str, str]:
        return {**super().space, "windows": "first"}


class WordLlamaEmbedder:
    """WordLlama: a token embedding table and average pooling; microseconds per passage."""

    def __init__(self) -> None:
        import wordllama
        from wordllama import WordLlama

        folder = Path(wordllama.__file__).parent
        self._model: Any = WordLlama.load(cache_dir=folder, disable_download=True)

    @property
    def space(self) -> dict[str, str]:
        return {"provider": "bench", "model": "wordllama-l2_supercat-256"}

    async def passages(self, passages: Sequence[Passage]) -> PassageVectors:
        texts = [f"{p.title}\n{p.text}" for p in passages]
        vectors = await asyncio.to_thread(self._embed, texts)
        return PassageVectors(vectors, np.arange(len(texts), dtype=np.int32))

    async def query(self, text: str, *, api_key: str | None) -> Vectors:
        vector: Vectors = self._embed([text])[0]
        return vector

    def _embed(self, texts: list[str]) -> Vectors:
        matrix: Vectors = np.asarray(self._model.embed(texts, norm=True), dtype=np.float32)
        shaped: Vectors = matrix.reshape(len(texts), -1)
        return shaped

    async def close(self) -> None:
        return None


def candidate(name: str) -> Any:
    if name == "minilm":
        return LocalEmbedder()
    if name == "minilm-first":
        return MiniLMFirstWindow()
    if name == "wordllama":
        return WordLlamaEmbedder()
    raise ValueError(f"unknown embedder {name!r}")
