"""The embedders: the local model's pinned files (SHA-256 checked, never imported), what the local
model makes of passages and questions (windows, unit vectors, 384 dimensions, repeatable), the
choice of embedder by EMBED_PROVIDER, and a tampered model leaving the index to keyword search."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bot.knowledge.embeddings as embeddings_module
from bot.knowledge import Knowledge
from bot.knowledge.embeddings import (
    LOCAL_DIMENSIONS,
    MAX_TOKENS,
    MODEL_FILE,
    MODEL_PACKAGE,
    MODEL_SHA256,
    TOKENIZER_FILE,
    TOKENIZER_PACKAGE,
    TOKENIZER_SHA256,
    WINDOW_TOKENS,
    EndpointEmbedder,
    LocalEmbedder,
    ModelFileError,
    Passage,
    _windows,
    make_embedder,
    verified_file,
)
from bot.settings import Settings

# -- the pinned model files ------------------------------------------------------------------

PACKAGE = "pinned_model_data_for_tests"
CONTENT = b"pretend these are model weights\n"


@pytest.fixture
def data_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed package holding a data file; importing it would fail the test."""
    package = tmp_path / "site" / PACKAGE
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text('raise AssertionError("the package was imported")\n')
    (package / "data" / "weights.bin").write_bytes(CONTENT)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return package


def test_a_file_with_the_pinned_digest_is_returned(data_package: Path) -> None:
    digest = hashlib.sha256(CONTENT).hexdigest()

    path = verified_file(PACKAGE, "data/weights.bin", digest)

    assert path == data_package / "data" / "weights.bin"


def test_a_file_whose_bytes_differ_from_the_pin_is_refused(data_package: Path) -> None:
    digest = hashlib.sha256(CONTENT).hexdigest()
    (data_package / "data" / "weights.bin").write_bytes(CONTENT.replace(b"model", b"evil!"))

    with pytest.raises(ModelFileError, match=f"not the pinned file.*expected {digest}"):
        verified_file(PACKAGE, "data/weights.bin", digest)


def test_a_missing_package_is_a_clear_error() -> None:
    with pytest.raises(ModelFileError, match=r"'no_such_model_package_xyz'.* is not installed"):
        verified_file("no_such_model_package_xyz", "model.onnx", "0" * 64)


def test_a_missing_file_in_the_package_is_a_clear_error(data_package: Path) -> None:
    with pytest.raises(ModelFileError, match=r"cannot read .*missing\.onnx"):
        verified_file(PACKAGE, "missing.onnx", "0" * 64)


def test_the_installed_model_files_are_the_pinned_ones() -> None:
    model = verified_file(MODEL_PACKAGE, MODEL_FILE, MODEL_SHA256)
    tokenizer = verified_file(TOKENIZER_PACKAGE, TOKENIZER_FILE, TOKENIZER_SHA256)

    assert model.name == "model.onnx" and tokenizer.name == "tokenizer.json"


@pytest.fixture
def tampered_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed model no longer matches its pin (as if its file had been replaced), and no
    model is loaded yet in this process."""
    monkeypatch.setattr(embeddings_module, "MODEL_SHA256", "0" * 64)
    monkeypatch.setattr(embeddings_module, "_LOADED", None)


@pytest.mark.usefixtures("tampered_model")
def test_a_tampered_model_is_not_loaded() -> None:
    with pytest.raises(ModelFileError, match="not the pinned file"):
        LocalEmbedder().query_sync("hello")

    assert embeddings_module._LOADED is None


@pytest.mark.usefixtures("tampered_model")
async def test_a_tampered_model_leaves_the_index_to_keyword_search(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (settings.knowledge_dir).mkdir()
    (settings.knowledge_dir / "a.md").write_text("# A\n\nThe sturdyword is here.\n")
    knowledge = Knowledge(settings)

    report = await knowledge.refresh()
    found = await knowledge.retrieve("sturdyword", api_key=None, top_k=3)
    await knowledge.close()

    assert not report.dense and report.note is not None and "ModelFileError" in report.note
    assert [p.path for p in found.passages] == ["a.md"] and found.evidence.cosine is None


# -- the local model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


def words(count: int) -> str:
    return " ".join(f"sensor{n % 50} reading" for n in range(count))


def test_a_question_is_one_unit_vector_of_384_dimensions(local: LocalEmbedder) -> None:
    vector = local.query_sync("Which port does the relay listen on?")

    assert vector.shape == (LOCAL_DIMENSIONS,) and vector.dtype == np.float32
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


def test_the_same_text_embeds_the_same_twice(local: LocalEmbedder) -> None:
    question = "How do I restart the relay after a crash?"
    passages = [Passage("relay.md / Restarting", "Run systemctl restart zephyrine.")]

    assert np.array_equal(local.query_sync(question), local.query_sync(question))
    first, second = local.passages_sync(passages), local.passages_sync(passages)
    assert np.allclose(first.vectors, second.vectors, atol=1e-6)
    assert np.array_equal(first.owners, second.owners)


def test_a_passage_without_a_title_embeds_like_the_same_question(local: LocalEmbedder) -> None:
    text = "The relay listens on TCP port 7443."

    [as_passage] = local.passages_sync([Passage("", text)]).vectors

    assert np.allclose(as_passage, local.query_sync(text), atol=1e-5)


def test_a_long_passage_is_read_as_several_windows(local: LocalEmbedder) -> None:
    short = Passage("notes.md / Short", "A short passage.")
    long = Passage("notes.md / Long", words(400))  # far more than MAX_TOKENS tokens

    embedded = local.passages_sync([short, long, short])

    owners = embedded.owners.tolist()
    assert owners[0] == 0 and owners[-1] == 2 and owners == sorted(owners)
    assert owners.count(0) == 1 and owners.count(2) == 1 and owners.count(1) >= 3
    assert embedded.vectors.shape == (len(owners), LOCAL_DIMENSIONS)
    assert np.allclose(np.linalg.norm(embedded.vectors, axis=1), 1.0, atol=1e-5)
    # The windows of the long passage read different parts of it.
    windows = embedded.vectors[embedded.owners == 1]
    assert not np.allclose(windows[0], windows[-1], atol=1e-3)


def test_no_passages_give_no_vectors(local: LocalEmbedder) -> None:
    embedded = local.passages_sync([])

    assert embedded.vectors.shape == (0, LOCAL_DIMENSIONS) and len(embedded.owners) == 0


def test_windows_cover_the_body_and_each_starts_with_the_title() -> None:
    title = [1, 2]
    body = list(range(100, 700))  # 600 tokens

    windows = _windows(title, body)

    assert len(windows) == 3
    assert all(len(w) <= WINDOW_TOKENS and w[:2] == title for w in windows)
    assert windows[0][2] == body[0] and windows[-1][-1] == body[-1]
    covered = {token for window in windows for token in window[2:]}
    assert covered == set(body)
    assert WINDOW_TOKENS + 2 == MAX_TOKENS  # room for [CLS] and [SEP]


def test_a_short_body_is_one_window() -> None:
    assert _windows([1], [5, 6, 7]) == [[1, 5, 6, 7]]


# -- choosing the embedder -------------------------------------------------------------------


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "knowledge_dir": tmp_path / "kb",
        "openai_api_key": None,
        "openai_base_url": "http://127.0.0.1:9/v1",  # discard port: nothing listens
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def test_the_local_model_is_the_default(tmp_path: Path) -> None:
    embedder = make_embedder(make_settings(tmp_path))

    assert isinstance(embedder, LocalEmbedder)
    assert embedder.space == {
        "provider": "local",
        "model": "all-MiniLM-L6-v2-int8",
        "sha256": MODEL_SHA256,
    }


async def test_openai_embeds_with_the_endpoint_and_names_its_space(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, embed_provider="openai", embed_model="embed-x")
    embedder = make_embedder(settings)

    question = await embedder.query("anything", api_key=None)  # no key at all: not embedded
    await embedder.close()

    assert isinstance(embedder, EndpointEmbedder)
    assert embedder.space == {
        "provider": "openai",
        "model": "embed-x",
        "base_url": "http://127.0.0.1:9/v1",
    }
    assert question is None
