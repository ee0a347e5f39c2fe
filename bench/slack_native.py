"""Slack's native streaming against the chat.update path, in one run: the real bot (slack-bolt,
slack_sdk) on loopback, the fake Slack from tests/ with Slack's own windows (chat.update 50 a
minute per workspace, chat.postMessage 1 a second per channel, chat.startStream and
chat.stopStream 20 a minute each, chat.appendStream 100), and the fake model streaming every
answer the same way (~150 words over ~3 s).

    python -m bench.slack_native [--pairs 5] [--burst 20] [--words 150]

First `--pairs` direct messages (streamed natively) and as many channel mentions (the chat.update
path) are asked at once; then, within the same minute, `--burst` more direct messages, past what
the start/stop budget admits, so the rest of them take the chat.update path. Per path: first
visible text after the question (p50/p95, the fake's clock: when the first write carrying answer
text reached it), the last write, Web API calls per answer, Tier-2 calls (start + stop), chat.update
and chat.appendStream calls, 429s, and whether every thread ends showing exactly the stored
answer. Figures, not asserts; under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from adapters.slack.markdown import inert
from bot.citations import sources_markdown
from bot.settings import Settings
from bot.streaming.layout import PLACEHOLDER
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import Call, FakeSlack, Message
from tests.slack.slack_rig import Bot, running_bot, slack_settings

TEAM = "T1"
INTERVAL = 0.02  # seconds between the model's words
TIER_2 = ("chat.startStream", "chat.stopStream")
QUESTION = "How many vacation days do employees get?"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def carries_text(call: Call) -> bool:
    """Whether a write that landed put some of the answer on screen."""
    if call.status != 200 or call.error is not None:
        return False
    if call.method in ("chat.appendStream", "chat.stopStream"):
        return bool(call.args.get("markdown_text"))
    if call.method in ("chat.startStream", "chat.postMessage", "chat.update"):
        text = str(call.args.get("markdown_text") or call.args.get("text") or "")
        return (bool(text.strip()) and PLACEHOLDER not in text) or "blocks" in call.args
    return False


async def expected(bot: Bot, asked: Message) -> str:
    *_, answer = await bot.core.store.thread_messages(f"slack:{TEAM}:{asked.channel}:{asked.ts}")
    footer = sources_markdown(answer.sources)
    return inert(f"{answer.text.rstrip()}\n\n{footer}" if footer else answer.text.rstrip())


async def measure(fake: FakeSlack, bot: Bot, asked: list[tuple[Message, float]]) -> dict[str, Any]:
    """Per path, the figures of the answers to `asked` (question, when it was asked)."""
    by_channel: dict[str, list[Call]] = defaultdict(list)
    for call in fake.calls:
        by_channel[str(call.args.get("channel"))].append(call)
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for question, at in asked:
        calls = [c for c in by_channel[question.channel] if c.at >= at and c.method != "auth.test"]
        path = "native" if any(c.method == "chat.startStream" for c in calls) else "chat.update"
        row = rows[path]
        first = next((c.at for c in calls if carries_text(c)), None)
        row["first"].append((first - at) if first is not None else float("nan"))
        row["final"].append(max(c.at for c in calls) - at)
        row["calls"].append(len(calls))
        row["tier2"].append(sum(c.method in TIER_2 for c in calls))
        row["updates"].append(sum(c.method == "chat.update" for c in calls))
        row["appends"].append(sum(c.method == "chat.appendStream" for c in calls))
        row["429"].append(sum(c.status == 429 for c in calls))
        shown = "".join(m.shown for m in fake.bot_messages(question.channel, question.ts))
        row["exact"].append(float(shown == await expected(bot, question)))
    return {
        path: {
            "answers": len(row["first"]),
            "first_p50": percentile(row["first"], 0.5),
            "first_p95": percentile(row["first"], 0.95),
            "final_p50": percentile(row["final"], 0.5),
            "calls_per_answer": statistics.mean(row["calls"]),
            "tier2": int(sum(row["tier2"])),
            "chat_update": int(sum(row["updates"])),
            "append": int(sum(row["appends"])),
            "429s": int(sum(row["429"])),
            "exact": int(sum(row["exact"])),
        }
        for path, row in sorted(rows.items())
    }


async def ask(fake: FakeSlack, channel: str, user: str, *, dm: bool) -> tuple[Message, float]:
    loop = asyncio.get_running_loop()
    at = loop.time()
    if dm:
        message = await fake.say(TEAM, channel, user, QUESTION, channel_type="im")
    else:
        bot_user = fake.teams[TEAM].bot_user_id
        message = await fake.say(TEAM, channel, user, f"<@{bot_user}> {QUESTION}")
    return message, at


async def run(pairs: int, burst: int, words: int) -> dict[str, dict[str, Any]]:
    fake_openai = FakeOpenAI()
    fake = FakeSlack()  # Slack's own windows
    fake.add_team(TEAM)
    await fake_openai.start()
    await fake.start()
    chunks = [f"word{n} " for n in range(words)] + ["[1]."]
    try:
        with tempfile.TemporaryDirectory() as folder:
            base = Settings(  # type: ignore[call-arg]  # pydantic-settings' init option
                _env_file=None,
                data_dir=Path(folder) / "data",
                knowledge_dir=Path(folder) / "knowledge",
                openai_base_url=fake_openai.base_url,
                openai_api_key=None,
                chat_model="gpt-fake-mini",
                embed_model="text-embedding-fake",
            )
            settings = slack_settings(base, fake, slack_post_rate=1, slack_post_window=1.0)
            async with running_bot(settings, fake) as bot:
                await bot.core.store.set_api_key(f"slack:{TEAM}", FAKE_KEY, set_by="UADMIN")
                for _ in range(2 * pairs + burst):
                    fake_openai.reply(*chunks, interval=INTERVAL)
                first = await asyncio.gather(
                    *(ask(fake, f"D0P{n:02d}", f"UP{n:02d}", dm=True) for n in range(pairs)),
                    *(ask(fake, f"C0P{n:02d}", f"UC{n:02d}", dm=False) for n in range(pairs)),
                )
                await bot.idle()
                second = await asyncio.gather(
                    *(ask(fake, f"D0B{n:02d}", f"UB{n:02d}", dm=True) for n in range(burst))
                )
                await bot.idle()
                return {
                    "side by side": await measure(fake, bot, list(first)),
                    "burst of DMs": await measure(fake, bot, list(second)),
                }
    finally:
        await fake.close()
        await fake_openai.close()


def table(results: dict[str, dict[str, Any]]) -> str:
    header = (
        "| run | path | answers | first visible p50/p95 s | last write p50 s | calls/answer | "
        "Tier-2 calls | chat.update | appends | 429s | exact final |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for run_name, paths in results.items():
        for path, r in paths.items():
            lines.append(
                f"| {run_name} | {path} | {r['answers']} | {r['first_p50']:.2f} / "
                f"{r['first_p95']:.2f} | {r['final_p50']:.2f} | {r['calls_per_answer']:.1f} | "
                f"{r['tier2']} | {r['chat_update']} | {r['append']} | {r['429s']} | "
                f"{r['exact']}/{r['answers']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--words", type=int, default=150)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.pairs, args.burst, args.words))
    print(table(results), flush=True)


if __name__ == "__main__":
    main()
