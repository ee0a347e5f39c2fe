"""bot/answer.py with a fake knowledge base, the real store and the loopback model endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot import prompts
from bot.answer import EXCERPT_CHARS, Answerer, Turn
from bot.citations import Source
from bot.errors import InputError, InvalidApiKey, ModelUnavailable
from bot.llm import LLM
from bot.settings import Settings
from bot.store import Store
from bot.vault import Vault, load_master_key
from tests.fakes.openai import FAKE_KEY, FakeOpenAI

WORKSPACE = "slack:T1"
REFUNDS = (
    "Customers can ask for a refund within 30 days of purchase. Refunds go back to the "
    "original payment method within five business days."
)
SHIPPING = "Orders ship from Oslo within two days; tracking numbers arrive by email."


@dataclass(frozen=True)
class FakePassage:
    path: str
    heading: str | None
    text: str
    score: float


@dataclass(frozen=True)
class FakeRetrieval:
    passages: list[FakePassage]
    relevant: bool


class FakeKnowledge:
    """Returns fixed passages, judged relevant or not, and remembers what it was asked."""

    def __init__(self, passages: Sequence[FakePassage], *, relevant: bool = True) -> None:
        self.passages = list(passages)
        self.relevant = relevant
        self.calls: list[tuple[str, str | None, int]] = []

    async def retrieve(self, query: str, *, api_key: str | None, top_k: int) -> FakeRetrieval:
        self.calls.append((query, api_key, top_k))
        return FakeRetrieval(self.passages[:top_k], self.relevant)


@pytest.fixture
def knowledge() -> FakeKnowledge:
    return FakeKnowledge(
        [
            FakePassage("policies/refunds.md", "Refund policy", REFUNDS, 0.9),
            FakePassage("shipping.md", None, SHIPPING, 0.4),
        ]
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    vault = Vault(load_master_key("test-secret", tmp_path))
    store = await Store.open(tmp_path / "bot.db", vault)
    yield store
    await store.close()


@pytest.fixture
def keyed_settings(fake_settings: Settings) -> Settings:
    return fake_settings.model_copy(update={"openai_api_key": SecretStr(FAKE_KEY)})


async def run(
    answerer: Answerer, question: str, history: Sequence[Turn] = (), workspace: str = WORKSPACE
) -> tuple[list[str], list[Source]]:
    """The text deltas and the sources, checking the sources are known only once the text is."""
    deltas: list[str] = []
    answer = answerer.answer(question, history, workspace)
    with pytest.raises(RuntimeError):
        answer.sources  # noqa: B018  # the property is what is tested
    async for delta in answer:
        deltas.append(delta)
    assert answer.text == "".join(deltas)
    return deltas, answer.sources


def make(settings: Settings, knowledge: FakeKnowledge, store: Store) -> Answerer:
    return Answerer(settings, knowledge, store, llm=LLM(settings, retry_delays=(0.0,)))


async def test_streams_a_cited_answer_then_only_the_sources_it_cites(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Within ", "30 days ", "[1].")
    answerer = make(keyed_settings, knowledge, store)
    deltas, sources = await run(answerer, "  How long do I have to ask for a refund? ")
    await answerer.close()

    assert deltas == ["Within ", "30 days ", "[1]."]
    # The shipping passage reached the model but the answer does not use it: not listed.
    assert [(s.number, s.path, s.heading) for s in sources] == [
        (1, "policies/refunds.md", "Refund policy")
    ]
    assert knowledge.calls == [
        ("How long do I have to ask for a refund?", FAKE_KEY, keyed_settings.retrieval_top_k)
    ]
    (request,) = fake_openai.chat_requests
    assert request.body["model"] == keyed_settings.chat_model
    system, user = request.messages
    assert system["role"] == "system"
    assert "[1]" in system["content"]
    assert "don't answer the question, say so plainly" in system["content"]
    assert "small talk" in system["content"]
    prompt = user["content"]
    # Passages are numbered in the order of the sources, then comes the question.
    assert prompt.index("[1] policies/refunds.md › Refund policy") < prompt.index(REFUNDS)
    assert prompt.index(REFUNDS) < prompt.index("[2] shipping.md") < prompt.index(SHIPPING)
    assert prompt.rstrip().endswith("How long do I have to ask for a refund?")


async def test_workspace_key_wins_over_the_fallback(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    assert fake_openai.keys is not None
    fake_openai.keys.add("sk-workspace-own-key")
    await store.set_api_key(WORKSPACE, "sk-workspace-own-key", set_by="U1")
    answerer = make(keyed_settings, knowledge, store)
    await run(answerer, "refunds?", workspace=WORKSPACE)
    await run(answerer, "refunds?", workspace="discord:42")
    await answerer.close()

    assert [r.api_key for r in fake_openai.chat_requests] == ["sk-workspace-own-key", FAKE_KEY]
    assert [key for _, key, _ in knowledge.calls] == ["sk-workspace-own-key", FAKE_KEY]


async def test_without_any_key_shows_passages_and_how_to_set_one(
    fake_settings: Settings, store: Store, fake_openai: FakeOpenAI
) -> None:
    long_text = "Refunds are possible. " + "Details follow here. " * 60
    knowledge = FakeKnowledge(
        [
            FakePassage("policies/refunds.md", "Refund policy", long_text, 0.9),
            FakePassage("shipping.md", None, SHIPPING, 0.4),
        ]
    )
    answerer = make(fake_settings, knowledge, store)
    deltas, sources = await run(answerer, "refunds?")
    await answerer.close()

    text = "".join(deltas)
    assert fake_openai.requests == []  # the model was never called
    assert knowledge.calls[0][1] is None
    assert text.startswith(prompts.NO_KEY_INTRO)
    assert "[1] policies/refunds.md › Refund policy\n> Refunds are possible." in text
    assert f"[2] shipping.md\n> {SHIPPING}" in text
    assert "/setkey" in text.splitlines()[-1]
    assert [s.number for s in sources] == [1, 2]
    assert len(sources[0].excerpt) <= EXCERPT_CHARS
    assert sources[0].excerpt.endswith("…")
    assert long_text not in text  # trimmed, not pasted whole


async def test_no_passages_at_all_means_a_plain_dont_know(
    keyed_settings: Settings, store: Store, fake_openai: FakeOpenAI
) -> None:
    answerer = make(keyed_settings, FakeKnowledge([]), store)
    deltas, sources = await run(answerer, "What is the CEO's favourite colour?")
    await answerer.close()
    assert "".join(deltas) == prompts.DONT_KNOW
    assert sources == []
    assert fake_openai.requests == []


async def test_follow_up_is_condensed_before_retrieval(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    history = [
        Turn("user", "How do refunds work?"),
        Turn("assistant", "Within 30 days, to the original payment method [1]."),
    ]
    fake_openai.reply("How long do refunds take to arrive?")  # the condensing call
    fake_openai.reply("Five business days ", "[1].")  # the answer
    answerer = make(keyed_settings, knowledge, store)
    deltas, _ = await run(answerer, "and how long until I see the money?", history)
    await answerer.close()

    condense, answer = fake_openai.chat_requests
    assert not condense.body.get("stream")
    condense_prompt = condense.messages[-1]["content"]
    for turn in history:
        assert turn.text in condense_prompt
    assert "and how long until I see the money?" in condense_prompt
    assert knowledge.calls[0][0] == "How long do refunds take to arrive?"

    # The answer call gets the history as chat messages, then the raw follow-up with passages.
    roles = [(m["role"], m["content"]) for m in answer.messages]
    assert roles[1:3] == [("user", history[0].text), ("assistant", history[1].text)]
    assert roles[3][1].endswith("and how long until I see the money?")
    assert answer.body["stream"] is True
    assert deltas == ["Five business days ", "[1]."]


async def test_failed_condensing_falls_back_to_the_raw_question(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    history = [Turn("user", "How do refunds work?"), Turn("assistant", "Within 30 days [1].")]
    fake_openai.fail(500)
    fake_openai.reply("Five days ", "[1].")
    answerer = make(keyed_settings, knowledge, store)
    deltas, sources = await run(answerer, "and for gift cards?", history)
    await answerer.close()
    assert knowledge.calls[0][0] == "How do refunds work?\nand for gift cards?"
    assert deltas == ["Five days ", "[1]."]
    assert [s.number for s in sources] == [1]


async def test_without_the_rewrite_a_follow_up_is_retrieved_with_the_last_question(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    # The follow-up latency benchmark compares the bot against this: one model call, the answer.
    history = [Turn("user", "How do refunds work?"), Turn("assistant", "Within 30 days [1].")]
    fake_openai.reply("Five days ", "[1].")
    answerer = Answerer(
        keyed_settings,
        knowledge,
        store,
        llm=LLM(keyed_settings, retry_delays=(0.0,)),
        rewrite_follow_ups=False,
    )
    deltas, sources = await run(answerer, "and for gift cards?", history)
    await answerer.close()
    assert knowledge.calls[0][0] == "How do refunds work?\nand for gift cards?"
    (answer,) = fake_openai.chat_requests
    assert answer.body["stream"] is True
    assert deltas == ["Five days ", "[1]."]
    assert [s.number for s in sources] == [1]


async def test_every_cited_source_is_listed_by_its_number(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Refunds take five days [2, 1]; shipping two [2][7].")
    answerer = make(keyed_settings, knowledge, store)
    _, sources = await run(answerer, "refunds and shipping?")
    await answerer.close()
    # [7] is no passage of this answer: ignored, not invented.
    assert [s.number for s in sources] == [1, 2]


async def test_an_answer_citing_nothing_says_so_instead_of_listing_sources(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Yes, I'm here. Ask me anything about the documents.")
    answerer = make(keyed_settings, knowledge, store)
    deltas, sources = await run(answerer, "are you there?")
    await answerer.close()
    assert sources == []
    assert "".join(deltas).endswith(prompts.NO_CITATIONS)
    # Small talk still went to the model with the passages found: it decides, not a cutoff.
    (request,) = fake_openai.chat_requests
    assert REFUNDS in request.messages[-1]["content"]


async def test_weak_passages_still_reach_the_model_with_a_key(
    keyed_settings: Settings, store: Store, fake_openai: FakeOpenAI
) -> None:
    knowledge = FakeKnowledge([FakePassage("shipping.md", None, SHIPPING, 0.1)], relevant=False)
    fake_openai.reply("The documents don't say; they cover shipping times [1].")
    answerer = make(keyed_settings, knowledge, store)
    deltas, _ = await run(answerer, "INC-4412 what is the CEO's favourite colour?")
    await answerer.close()
    (request,) = fake_openai.chat_requests
    assert SHIPPING in request.messages[-1]["content"]
    assert "INC-4412 what is the CEO's favourite colour?" in request.messages[-1]["content"]
    assert "".join(deltas).startswith("The documents don't say")


async def test_without_a_key_an_irrelevant_question_is_declined_with_the_hint(
    fake_settings: Settings, store: Store, fake_openai: FakeOpenAI
) -> None:
    knowledge = FakeKnowledge([FakePassage("shipping.md", None, SHIPPING, 0.1)], relevant=False)
    answerer = make(fake_settings, knowledge, store)
    deltas, sources = await run(answerer, "what's a good lasagna recipe?")
    await answerer.close()
    text = "".join(deltas)
    assert text.startswith(prompts.NO_KEY_DECLINE)
    assert SHIPPING not in text
    assert text.rstrip().endswith(prompts.NO_KEY_OUTRO)
    assert sources == []
    assert fake_openai.requests == []


async def test_a_question_over_the_length_cap_is_refused_with_the_numbers(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    settings = keyed_settings.model_copy(update={"max_question_chars": 200})
    answerer = make(settings, knowledge, store)
    with pytest.raises(InputError) as refused:
        await run(answerer, "why? " * 60)
    await answerer.close()
    assert "299 characters" in refused.value.user_message
    assert "up to 200" in refused.value.user_message
    assert knowledge.calls == [] and fake_openai.requests == []


async def test_the_answer_is_capped_in_tokens(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    settings = keyed_settings.model_copy(update={"answer_max_tokens": 321})
    fake_openai.reply("Short [1].")
    answerer = make(settings, knowledge, store)
    await run(answerer, "refunds?")
    await answerer.close()
    (request,) = fake_openai.chat_requests
    assert request.body["max_completion_tokens"] == 321


async def test_a_long_history_is_cut_to_fit_the_context_newest_kept(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    settings = keyed_settings.model_copy(
        update={"model_context_tokens": 4000, "answer_max_tokens": 500, "history_turns": 100}
    )
    history = [
        Turn("user" if n % 2 == 0 else "assistant", f"turn {n}: " + "words " * 400)
        for n in range(20)
    ]
    fake_openai.reply("standalone question")
    fake_openai.reply("ok [1]")
    answerer = make(settings, knowledge, store)
    await run(answerer, "and then?", history)
    await answerer.close()
    _, answer = fake_openai.chat_requests
    prompt_chars = sum(len(str(m["content"])) for m in answer.messages)
    assert prompt_chars // prompts.CHARS_PER_TOKEN <= 4000 - 500
    kept = [str(m["content"]) for m in answer.messages[1:-1]]
    assert kept, "some history still fits"
    assert kept[-1].startswith("turn 19:")  # the newest turns are the ones kept
    assert not any(text.startswith("turn 0:") for text in kept)
    assert REFUNDS in str(answer.messages[-1]["content"])


async def test_history_is_limited_to_the_newest_turns(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    settings = keyed_settings.model_copy(update={"history_turns": 2})
    history = [
        Turn("user", "old question"),
        Turn("assistant", "old answer"),
        Turn("user", "recent question"),
        Turn("assistant", "recent answer"),
    ]
    fake_openai.reply("standalone")
    fake_openai.reply("ok")
    answerer = make(settings, knowledge, store)
    await run(answerer, "follow-up?", history)
    await answerer.close()
    condense, answer = fake_openai.chat_requests
    assert "old question" not in condense.messages[-1]["content"]
    assert [m["content"] for m in answer.messages[1:3]] == ["recent question", "recent answer"]


async def test_model_errors_propagate_after_partial_text(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Within ", "30 days", fail_after=1)
    answerer = make(keyed_settings, knowledge, store)
    seen: list[str] = []
    answer = answerer.answer("refunds?", [], WORKSPACE)

    async def consume() -> None:
        async for delta in answer:
            seen.append(delta)

    with pytest.raises(ModelUnavailable):
        await consume()
    await answerer.close()
    assert seen == ["Within "]  # the partial text, and no sources for a failed answer
    with pytest.raises(RuntimeError):
        answer.sources  # noqa: B018


async def test_rejected_workspace_key_fails_the_answer(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store
) -> None:
    await store.set_api_key(WORKSPACE, "sk-revoked-key-000000", set_by="U1")
    answerer = make(keyed_settings, knowledge, store)
    with pytest.raises(InvalidApiKey):
        await run(answerer, "refunds?")
    await answerer.close()


async def test_blank_question_is_an_input_error(
    keyed_settings: Settings, knowledge: FakeKnowledge, store: Store
) -> None:
    answerer = make(keyed_settings, knowledge, store)
    with pytest.raises(InputError):
        await run(answerer, "   ")
    await answerer.close()
    assert knowledge.calls == []


@pytest.mark.parametrize(
    ("workspace", "says", "never"),
    [
        ("slack:T1", "`/setkey`", "Settings"),
        ("discord:42", "`/setkey`", "Settings"),
        ("web:local", "in Settings", "/setkey"),  # the web chat's key form, not a slash command
        ("discord:user:7", "Ask in a server", "An admin can"),  # a user install holds no key
    ],
)
async def test_without_a_key_the_way_to_written_answers_is_one_the_reader_can_take(
    fake_settings: Settings,
    store: Store,
    fake_openai: FakeOpenAI,
    workspace: str,
    says: str,
    never: str,
) -> None:
    texts = []
    for relevant in (True, False):  # the passages, or the decline: both end with the way
        knowledge = FakeKnowledge(
            [FakePassage("shipping.md", None, SHIPPING, 0.9)], relevant=relevant
        )
        answerer = make(fake_settings, knowledge, store)
        deltas, _ = await run(answerer, "how long does shipping take?", workspace=workspace)
        await answerer.close()
        texts.append("".join(deltas))

    assert texts[0].startswith(prompts.NO_KEY_INTRO)
    assert texts[1].startswith(prompts.NO_KEY_DECLINE)
    for text in texts:
        last = text.rstrip().splitlines()[-1]
        assert says in last and never not in last
    assert fake_openai.requests == []
