"""How passages are chosen and judged: the user story of a small knowledge folder searched with the
real local model, a paraphrase only dense search finds, the ranking methods and the keyless
relevance gate on hand-made numbers, and dense search over several vectors per passage."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from bot.knowledge import Knowledge, RefreshReport, Retrieval
from bot.knowledge import search as search_module
from bot.knowledge.embeddings import PassageVectors
from bot.knowledge.keywords import KeywordHit
from bot.knowledge.search import (
    COSINE_MIN,
    COSINE_SURE,
    KEYWORD_MIN,
    KEYWORD_ONLY_MIN,
    SMALL_CORPUS,
    Z_MIN,
    Evidence,
    Method,
    rank,
)
from bot.knowledge.vectors import DenseResult, VectorIndex
from bot.settings import Settings

# -- the user story: a small team folder, the real local model, no key -------------------------

TEAM_DOCS = {
    "relay.md": (
        "# The sensor relay\n\n"
        "The relay's codename is Zephyrine. It collects readings from the field sensors and "
        "forwards them to the data platform.\n\n"
        "## Network\n\n"
        "The relay listens on TCP port 7443. If a firewall sits between the sensors and the "
        "relay, open that port for inbound TCP traffic.\n\n"
        "## Restarting after a crash\n\n"
        "If the relay crashes, run `systemctl restart zephyrine` on the relay host, then read "
        "`journalctl -u zephyrine` for the cause. It replays buffered readings on start.\n"
    ),
    "vacation.md": (
        "# Vacation policy\n\nEmployees get 25 days of paid vacation a year. Ask your manager "
        "at least two weeks ahead and record the days in the HR portal.\n"
    ),
    "expenses.md": (
        "# Expense reports\n\nSubmit expense reports within 30 days with the receipts "
        "attached. Finance pays approved reports with the next payroll.\n"
    ),
    "onboarding.md": (
        "# Onboarding\n\nNew hires receive a laptop on their first day and meet their buddy, "
        "who shows them around the office and the team's tools.\n"
    ),
    "parking.md": (
        "# Parking\n\nThe office garage has 40 spaces; badges open the gate. Bicycles go in "
        "the rack by the north entrance.\n"
    ),
}

STORY_QUESTIONS = [
    ("hey, quick question from the ops team: what's the relay codename again?", "The sensor relay"),
    ("INC-4412 what is the relay codename?", "The sensor relay"),
    ("Which port should I open in our firewall for the Zephyrine thing?", "Network"),
    ("how do I restart it after a crash", "Restarting after a crash"),
]  # fmt: skip


def settings_for(root: Path) -> Settings:
    """The defaults: local embedding model, no key anywhere."""
    return Settings(
        _env_file=None,
        data_dir=root / "data",
        knowledge_dir=root / "kb",
        openai_api_key=None,
        openai_base_url="http://127.0.0.1:9/v1",  # discard port: nothing listens
    )


def write_docs(root: Path, docs: dict[str, str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (root / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def team_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The team folder, indexed once for this module."""
    root = tmp_path_factory.mktemp("team")
    write_docs(root / "kb", TEAM_DOCS)

    async def ingest() -> RefreshReport:
        knowledge = Knowledge(settings_for(root))
        try:
            return await knowledge.refresh()
        finally:
            await knowledge.close()

    report = asyncio.run(ingest())
    assert report.dense and report.note is None and len(report.added) == len(TEAM_DOCS)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def team(team_root: Path) -> AsyncIterator[Knowledge]:
    knowledge = Knowledge(settings_for(team_root))
    yield knowledge
    await knowledge.close()


def sections(found: Retrieval) -> list[tuple[str, str | None]]:
    return [(p.path, p.heading) for p in found.passages]


@pytest.mark.parametrize(("question", "heading"), STORY_QUESTIONS)
async def test_team_questions_find_the_relay_passage_first_and_are_relevant(
    team: Knowledge, question: str, heading: str
) -> None:
    found = await team.retrieve(question, api_key=None, top_k=3)

    assert sections(found)[0] == ("relay.md", heading), sections(found)
    assert found.relevant, found.evidence


async def test_an_off_topic_question_still_gets_passages_but_is_not_relevant(
    team: Knowledge,
) -> None:
    found = await team.retrieve("what's a good lasagna recipe?", api_key=None, top_k=3)

    assert len(found.passages) == 3  # no cutoff: with a key the model would judge them
    assert not found.relevant, found.evidence
    assert found.evidence.cosine is not None and found.evidence.cosine < COSINE_MIN


async def test_a_paraphrase_is_found_only_through_the_local_model(tmp_path: Path) -> None:
    write_docs(
        tmp_path / "kb",
        {
            **{name: text for name, text in TEAM_DOCS.items() if name != "expenses.md"},
            "travel.md": (
                "# Reimbursement of travel costs\n\nStaff who travel on company assignments are "
                "refunded for train tickets, hotel nights and meals. Hand the receipts to "
                "finance within 30 days.\n"
            ),
        },
    )
    knowledge = Knowledge(settings_for(tmp_path))
    await knowledge.refresh()
    question = "how do I get my money back for a business trip?"

    keyword = await knowledge.retrieve(question, api_key=None, top_k=5, method="keyword")
    default = await knowledge.retrieve(question, api_key=None, top_k=5)

    assert "travel.md" not in [p.path for p in keyword.passages]  # no word in common
    assert sections(default)[0] == ("travel.md", "Reimbursement of travel costs")
    await knowledge.close()


# -- ranking methods on hand-made candidates ---------------------------------------------------

# Keyword search prefers a, then b; dense search prefers c, then b, then a.
KEYWORD_HITS = [KeywordHit("a", 10.0), KeywordHit("b", 5.0)]
DENSE = DenseResult(
    hits=[("c", 0.9), ("b", 0.8), ("a", 0.1)],
    scores={"a": 0.1, "b": 0.8, "c": 0.9},
    mean=0.3,
    spread=0.2,
    count=50,
)


def ids(ranking: list[tuple[str, float]]) -> list[str]:
    return [chunk_id for chunk_id, _ in ranking]


def test_keyword_and_dense_methods_keep_their_own_order() -> None:
    assert rank(KEYWORD_HITS, DENSE, method="keyword").ranking == [("a", 10.0), ("b", 5.0)]
    assert rank(KEYWORD_HITS, DENSE, method="dense").ranking == DENSE.hits


def test_fused_is_reciprocal_rank_fusion() -> None:
    ranking = rank(KEYWORD_HITS, DENSE, method="fused").ranking

    # a: 1/61 + 1/63, b: 1/62 + 1/62, c: 1/61 (RRF_K = 60)
    assert ids(ranking) == ["a", "b", "c"]
    assert ranking[0][1] == pytest.approx(1 / 61 + 1 / 63)
    assert ranking[1][1] == pytest.approx(2 / 62)
    assert ranking[2][1] == pytest.approx(1 / 61)


def test_rescored_weighs_the_spread_cosine_and_bm25() -> None:
    ranking = rank(KEYWORD_HITS, DENSE, method="rescored").ranking

    # cosine over the pool spread to 0..1: a 0, b 0.875, c 1; BM25: a 1, b 0, c (no hit) 0.
    # 0.8 * cosine + 0.2 * BM25: c 0.8, b 0.7, a 0.2.
    assert ids(ranking) == ["c", "b", "a"]
    assert [score for _, score in ranking] == pytest.approx([0.8, 0.7, 0.2])


def test_candidates_beyond_the_rescored_pool_keep_their_fused_order_below_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(search_module, "RESCORE_POOL", 2)

    ranking = rank(KEYWORD_HITS, DENSE, method="rescored").ranking

    # Pool a, b (fused order): cosine a 0, b 1; BM25 a 1, b 0 -> b 0.8, a 0.2; then c.
    assert ids(ranking) == ["b", "a", "c"]
    assert ranking[2][1] < ranking[1][1]


@pytest.mark.parametrize("method", ["keyword", "dense", "fused", "rescored"])
def test_without_dense_results_every_method_is_keyword_search(method: Method) -> None:
    for dense in (None, DenseResult([], {}, 0.0, 0.0, 0)):
        ranked = rank(KEYWORD_HITS, dense, method=method)

        assert ranked.ranking == [("a", 10.0), ("b", 5.0)]
        assert ranked.evidence == Evidence(None, None, 10.0)


def test_evidence_is_the_best_cosine_its_z_and_the_best_bm25() -> None:
    evidence = rank(KEYWORD_HITS, DENSE).evidence

    assert evidence.cosine == pytest.approx(0.9)
    assert evidence.z == pytest.approx((0.9 - 0.3) / 0.2)
    assert (evidence.keyword, evidence.passages) == (10.0, 50)
    assert rank([], DENSE).evidence.keyword == 0.0


# -- the keyless relevance gate ---------------------------------------------------------------

BIG = SMALL_CORPUS * 10
BELOW = 1e-6

RELEVANCE_CASES = [
    # no dense search: BM25 alone
    ("keyword only, strong", Evidence(None, None, KEYWORD_ONLY_MIN), True),
    ("keyword only, weak", Evidence(None, None, KEYWORD_ONLY_MIN - BELOW), False),
    # a plainly close passage, whatever else
    ("sure cosine", Evidence(-5.0, COSINE_SURE, 0.0, BIG), True),
    # a small corpus: the cosine alone
    ("small corpus, close", Evidence(0.0, COSINE_MIN, 0.0, SMALL_CORPUS - 1), True),
    ("small corpus, far", Evidence(9.0, COSINE_MIN - BELOW, 9.0, SMALL_CORPUS - 1), False),
    # a large corpus: close enough and standing out, or sharing rare words
    ("large, stands out", Evidence(Z_MIN, COSINE_MIN, 0.0, BIG), True),
    ("large, rare words", Evidence(0.0, COSINE_MIN, KEYWORD_MIN, BIG), True),
    ("large, neither", Evidence(Z_MIN - BELOW, 0.45, KEYWORD_MIN - BELOW, BIG), False),
    ("large, too far", Evidence(9.0, COSINE_MIN - BELOW, 9.0, BIG), False),
    ("at SMALL_CORPUS", Evidence(Z_MIN - BELOW, COSINE_SURE - BELOW, 0.0, SMALL_CORPUS), False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("evidence", "relevant"),
    [(evidence, relevant) for _, evidence, relevant in RELEVANCE_CASES],
    ids=[name for name, _, _ in RELEVANCE_CASES],
)
def test_the_relevance_gate(evidence: Evidence, relevant: bool) -> None:
    assert evidence.relevant is relevant


def test_nothing_found_is_never_relevant() -> None:
    sure = Evidence(9.0, 0.99, 99.0, BIG)

    assert Retrieval([], sure).relevant is False


# -- dense search over several vectors per passage ----------------------------------------------


def unit(*values: float) -> list[float]:
    vector = np.asarray(values, dtype=np.float32)
    return list(vector / np.linalg.norm(vector))


def part(owners: list[int], rows: list[list[float]]) -> PassageVectors:
    return PassageVectors(np.asarray(rows, dtype=np.float32), np.asarray(owners, dtype=np.int32))


def test_a_passage_scores_by_its_best_window() -> None:
    # p1 is a long passage read as two windows, the second about the question; p2 has one.
    index = VectorIndex(
        [
            (["p1", "p2"], part([0, 0, 1], [unit(1, 0, 0), unit(0, 1, 0), unit(3, 4, 0)])),
            (["p3"], part([0], [unit(0, 0, 1)])),
        ]
    )

    result = index.search(np.asarray(unit(0, 1, 0), dtype=np.float32), limit=3)

    assert len(index) == 3 and index.dimensions == 3
    assert [chunk_id for chunk_id, _ in result.hits] == ["p1", "p2", "p3"]
    assert [score for _, score in result.hits] == pytest.approx([1.0, 0.8, 0.0])
    assert result.mean == pytest.approx(0.6) and result.count == 3
    assert result.spread == pytest.approx(np.std([1.0, 0.8, 0.0]))


def test_search_scores_the_passages_asked_for_beyond_the_limit() -> None:
    index = VectorIndex(
        [(["near", "mid", "far"], part([0, 1, 2], [unit(1, 0), unit(1, 1), unit(0, 1)]))]
    )

    result = index.search(np.asarray(unit(1, 0), dtype=np.float32), 1, also=["far", "unknown"])

    assert [chunk_id for chunk_id, _ in result.hits] == ["near"]
    assert result.scores == pytest.approx({"near": 1.0, "far": 0.0})


def test_every_passage_needs_a_vector() -> None:
    with pytest.raises(ValueError, match="at least one vector"):
        VectorIndex([(["p1", "p2"], part([0, 0], [unit(1, 0), unit(0, 1)]))])


def test_a_query_of_another_size_finds_nothing() -> None:
    index = VectorIndex([(["p1"], part([0], [unit(1, 0, 0)]))])

    result = index.search(np.asarray(unit(1, 0), dtype=np.float32), 5)

    assert (result.hits, result.count) == ([], 0)
