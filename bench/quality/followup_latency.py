"""What rewriting a follow-up into a standalone question costs in time to first visible text.

    python -m bench.quality.followup_latency [--runs 20] [--first-token 0.5] [--interval 0.02]

The bot's real Answerer and index (the bundled user guide, local embeddings) against the loopback
fake model, which answers every call after `--first-token` seconds and then one token every
`--interval` (the end-to-end benchmark's model: 0.5 s and 50 tokens/s). A follow-up is answered
twice per run: with the rewrite call (what the bot does) and with "last question + follow-up"
instead (what the eval's `with-last-turn` row measures). Prints the medians; nothing asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from bot.answer import Answerer, Turn
from bot.knowledge import Knowledge
from bot.resources import bundled
from bot.settings import Settings
from bot.store import Store
from bot.vault import Vault, load_master_key
from tests.fakes.openai import FAKE_KEY, FakeOpenAI, Reply

HISTORY = [
    Turn("user", "How do I set the API key for our Slack workspace?"),
    Turn("assistant", "Run /setkey with the key; it is checked and stored encrypted [1]."),
]
FOLLOW_UP = "and who is allowed to do that?"
REWRITE = ("Who", " is", " allowed", " to", " run", " /setkey", " in", " Slack?")
ANSWER = tuple(f" word{n}" for n in range(40))


async def first_text(answerer: Answerer) -> float:
    """Seconds from the question to its first text delta (the whole answer is still read)."""
    started = time.perf_counter()
    first: float | None = None
    async for delta in answerer.answer(FOLLOW_UP, HISTORY, "bench:1"):
        if first is None and delta:
            first = time.perf_counter() - started
    assert first is not None
    return first


async def main(runs: int, first_token: float, interval: float) -> None:
    fake = FakeOpenAI(keys=None, check_spec=False)
    await fake.start()
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(  # type: ignore[call-arg]  # pydantic-settings' own argument
            _env_file=None,
            data_dir=Path(scratch),
            knowledge_dir=bundled("knowledge"),
            openai_base_url=fake.base_url,
            openai_api_key=SecretStr(FAKE_KEY),
        )
        knowledge = Knowledge(settings)
        await knowledge.refresh()
        store = await Store.open(
            Path(scratch) / "bot.db", Vault(load_master_key("b", Path(scratch)))
        )
        timings: dict[str, list[float]] = {"rewrite": [], "last turn + question": []}
        for _ in range(runs):
            for name, rewrite in (("rewrite", True), ("last turn + question", False)):
                answerer = Answerer(settings, knowledge, store, rewrite_follow_ups=rewrite)
                if rewrite:
                    fake.reply_with(
                        Reply(REWRITE, stall_after=0, stall=first_token, interval=interval)
                    )
                fake.reply_with(Reply(ANSWER, stall_after=0, stall=first_token, interval=interval))
                timings[name].append(await first_text(answerer))
                await answerer.close()
        await store.close()
        await knowledge.close()
    await fake.close()
    print(
        f"time to first text of a follow-up, median of {runs} runs "
        f"(model: {first_token} s to first token, {1 / interval:.0f} tokens/s):"
    )
    for name, values in timings.items():
        print(f"  {name:>22}: {statistics.median(values):.3f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--first-token", type=float, default=0.5)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.first_token, args.interval))
