"""What every end-to-end benchmark process agrees on: the questions, the scripted answers, and the
record of one conversation as the fake platform saw it.

The processes of one run (each its own OS process, so none shares the bot's event loop):
- the fake model (`bench/e2e/model.py`): streams the scripted answer for each question and notes,
  per conversation, when its first and last content chunks went out;
- the fake platform (`bench/e2e/slack_platform.py`, `bench/e2e/discord_platform.py`): the
  loopback Slack or Discord from tests/, plus a driver that asks the questions all at once and
  records every write the bot makes, with its time and text;
- the bot under test: `bot run` (answerbot) or the naive baseline (`bench/e2e/*_naive.py`).

Times are `time.monotonic()` seconds; on Linux that is CLOCK_MONOTONIC, one clock for every process
on the machine, so the model's and the platform's stamps can be compared directly.

The platform process contract (both platforms implement it; `bench/e2e/runner.py` drives it):
- started as `python -m bench.e2e.<platform>_platform --port 0 --conversations C
  --speedup S [...]`, it prints one line `BENCH_PLATFORM_URL=http://127.0.0.1:P` once serving;
- `GET /bench/env?bot=answerbot|naive` -> JSON object of environment variables the bot process
  needs to reach this platform (tokens, API URLs, budgets scaled by the speedup);
- `POST /bench/run` with JSON `{"bot_url": str | null, "deadline": seconds}` waits until the bot
  is connected (Discord: identified and commands synced), asks every question at once, waits
  until every conversation has its final text or the deadline passed, then answers JSON
  `{"conversations": [Conversation...], "calls": {budget key: count}, "budgets": {budget key:
  [rate, window]}, "rate_limited": int, "early": int, "started": float, "ended": float}`
  ("early": calls made before a Retry-After the platform gave had passed).
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

QUESTION_TAG = re.compile(r"BENCH-Q(\d+)\b")
_SENTENCE = (
    "the bot answers from your documents and cites where each fact was found so people can check "
    "it before they act on it while the team keeps writing in the channels they already use"
)
WORDS = tuple(_SENTENCE.split(" "))
# 200 tokens at 50 a second: a four-second answer, about 1,300 characters, so it fits one
# message on both platforms and the figures measure streaming, not splitting.
DEFAULT_TOKENS = 200
DEFAULT_INTERVAL = 0.02
DEFAULT_FIRST_TOKEN = 0.5  # the model's time to first token


def question_text(qid: int) -> str:
    """The question asked in conversation `qid`; the tag lets the model find its script."""
    return f"BENCH-Q{qid} how do I deploy the bot and where do answers come from?"


def question_id(text: str) -> int | None:
    found = QUESTION_TAG.search(text)
    return int(found.group(1)) if found else None


def answer_chunks(qid: int, tokens: int = DEFAULT_TOKENS) -> list[str]:
    """The scripted answer for conversation `qid`, one chunk per token; plain words and full
    stops only, so every platform shows it unchanged (no markdown to convert)."""
    rng = random.Random(qid)
    chunks = [f"Answer{qid}"]
    while len(chunks) < tokens:
        word = rng.choice(WORDS)
        chunks.append(f" {word}" if rng.random() > 0.08 else f" {word}.")
    chunks[-1] = chunks[-1].rstrip(".") + "."
    return chunks


def answer_text(qid: int, tokens: int = DEFAULT_TOKENS) -> str:
    return "".join(answer_chunks(qid, tokens))


@dataclass
class Conversation:
    """One question and what the platform saw of its answer (None: never happened)."""

    qid: int
    asked: float  # the question went out (Slack: event POST sent; Discord: dispatch sent)
    acked: float | None = None  # Slack: the event POST answered; Discord: interaction callback
    first_visible: float | None = None  # first write showing any of the answer's text
    final: float | None = None  # the write after which the full answer text is shown
    last_write: float | None = None  # the conversation's last write of any kind
    exact: bool = False  # the messages finally show the whole answer text exactly
    writes: int = 0  # posts and edits made for this conversation
    post_key: str = ""  # budget keys the platform charges this conversation's calls to
    edit_key: str = ""
    # Filled in by the runner from the model's record:
    first_token: float | None = None
    last_token: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Conversation:
        return cls(**data)


def shows_answer(text: str, qid: int, tokens: int = DEFAULT_TOKENS) -> tuple[bool, bool]:
    """(shows some of the answer, shows all of it exactly) for one message text (or the joined
    texts of an answer's messages)."""
    full = answer_text(qid, tokens)
    return f"Answer{qid}" in text, full in text
