"""The Discord adapter end to end: real discord.py and the real core against the loopback fake
Discord and fake OpenAI endpoint. Each test drives the gateway (INTERACTION_CREATE,
MESSAGE_CREATE) and checks what a person in the server would see."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.errors import INTERRUPTED
from bot.settings import Settings
from tests.discord.discord_rig import (
    RunningBot,
    Server,
    discord_settings,
    running_bot,
)
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai import FAKE_KEY, FakeOpenAI


def buttons(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components", []) for c in row["components"]]


def finished(fake: FakeDiscord, message_ids: list[str]) -> list[dict[str, Any]] | None:
    """The answer's messages once its last one carries the feedback buttons."""
    messages = [fake.messages[m] for m in message_ids if m in fake.messages]
    return messages if messages and buttons(messages[-1]) else None


def failed(fake: FakeDiscord, message_id: str | None) -> dict[str, Any] | None:
    message = fake.messages.get(message_id or "")
    return message if message and "⚠️" in message["content"] else None


def answer_ids(fake: FakeDiscord, interaction: Any) -> list[str]:
    return [interaction.original_id, *interaction.followup_ids] if interaction.original_id else []


def bot_replies(fake: FakeDiscord, channel_id: str) -> list[str]:
    return [m["id"] for m in fake.channel_messages(channel_id) if m["author"]["id"] == fake.bot_id]


async def set_key(bot: RunningBot, server: Server) -> None:
    await bot.core.store.set_api_key(server.workspace, FAKE_KEY, set_by=server.admin)


async def test_ask_before_any_key_answers_from_passages_and_names_setkey(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    interaction = await fake.slash(
        alpha.guild_id, alpha.channel_id, alpha.member, "ask", question="How do I deploy?"
    )
    [message] = await fake.wait_for(lambda: finished(fake, answer_ids(fake, interaction)))
    assert interaction.callbacks[0]["type"] == 5  # deferred inside Discord's 3 seconds
    assert "make release" in message["content"]  # the best passage
    assert "deploy.md" in message["content"]  # its source
    assert "/setkey" in message["content"]
    assert message["edits"] >= 2  # the placeholder, then the answer
    up, down = buttons(message)
    assert up.startswith("feedback:up:") and down.startswith("feedback:down:")
    history = await bot.core.store.thread_messages(
        f"discord:{alpha.guild_id}:{alpha.channel_id}:{interaction.id}"
    )
    assert [m.role for m in history] == ["user", "assistant"]
    assert up == f"feedback:up:{history[1].id}"


async def test_ask_with_a_key_streams_the_model_answer_with_numbered_sources(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    await set_key(bot, alpha)
    fake_openai.reply("Run", " `make release`", " from main", " [1].", interval=0.05)
    interaction = await fake.slash(
        alpha.guild_id, alpha.channel_id, alpha.member, "ask", question="How do I deploy?"
    )
    [message] = await fake.wait_for(lambda: finished(fake, answer_ids(fake, interaction)))
    assert message["content"].startswith("Run `make release` from main [1].")
    assert "[1]" in message["content"].split("from main [1].", 1)[1]  # the numbered sources
    assert "deploy.md" in message["content"]
    assert "/setkey" not in message["content"]
    assert fake_openai.chat_requests[-1].api_key == FAKE_KEY


async def test_mention_gets_a_reply_that_is_edited_into_the_answer(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    question = await fake.say(
        alpha.guild_id, alpha.channel_id, alpha.member, "how many vacation days?", mention_bot=True
    )
    [answer] = await fake.wait_for(lambda: finished(fake, bot_replies(fake, alpha.channel_id)))
    assert str(answer["message_reference"]["message_id"]) == question["id"]
    assert "25 days" in answer["content"]
    assert answer["edits"] >= 1
    thread = await bot.core.store.thread_messages(
        f"discord:{alpha.guild_id}:{alpha.channel_id}:{question['id']}"
    )
    assert thread[0].text == "how many vacation days?"  # the mention itself is not the question


async def test_message_without_mention_is_ignored(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    await fake.say(alpha.guild_id, alpha.channel_id, alpha.member, "just chatting")
    await fake.say(alpha.guild_id, alpha.channel_id, alpha.member, "deploy?", mention_bot=True)
    await fake.wait_for(lambda: finished(fake, bot_replies(fake, alpha.channel_id)))
    assert len(bot_replies(fake, alpha.channel_id)) == 1  # only the mention was answered


async def test_reply_to_an_answer_continues_the_conversation_with_its_history(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    await set_key(bot, alpha)
    fake_openai.default = lambda body: ["Twenty-five days [1]."]
    await fake.say(
        alpha.guild_id, alpha.channel_id, alpha.member, "How many vacation days?", mention_bot=True
    )
    [first] = await fake.wait_for(lambda: finished(fake, bot_replies(fake, alpha.channel_id)))
    requests_before = len(fake_openai.chat_requests)
    await fake.say(
        alpha.guild_id,
        alpha.channel_id,
        alpha.member,
        "And how early do I ask?",
        mention_bot=True,
        reply_to=first["id"],
    )
    await fake.wait_for(
        lambda: (
            len(bot_replies(fake, alpha.channel_id)) == 2
            and finished(fake, bot_replies(fake, alpha.channel_id)[1:])
        )
    )
    later = fake_openai.chat_requests[requests_before:]
    sent = " ".join(str(m.get("content")) for r in later for m in r.messages)
    assert "How many vacation days?" in sent  # the history came from our store
    thread = await bot.core.store.thread_messages(
        f"discord:{alpha.guild_id}:{alpha.channel_id}:{first['message_reference']['message_id']}"
    )
    assert [m.text for m in thread if m.role == "user"] == [
        "How many vacation days?",
        "And how early do I ask?",
    ]


async def test_thread_per_question_opens_a_thread_and_follow_ups_there_continue(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    settings = discord_settings(fake_settings, fake, discord_thread_per_question=True)
    async with running_bot(settings, fake) as bot:
        question = await fake.say(
            alpha.guild_id, alpha.channel_id, alpha.member, "How do I deploy?", mention_bot=True
        )
        thread_id = question["id"]  # a thread started from a message takes the message's id
        [answer] = await fake.wait_for(lambda: finished(fake, bot_replies(fake, thread_id)))
        assert fake.channels[thread_id]["parent_id"] == alpha.channel_id
        assert fake.channels[thread_id]["name"] == "How do I deploy?"
        assert "message_reference" not in answer
        assert bot_replies(fake, alpha.channel_id) == []  # nothing posted in the channel itself
        await fake.say(alpha.guild_id, thread_id, alpha.member, "Who approves?", mention_bot=True)
        await fake.wait_for(
            lambda: (
                len(bot_replies(fake, thread_id)) == 2
                and finished(fake, bot_replies(fake, thread_id)[1:])
            )
        )
        # /ask inside the thread joins the same conversation.
        ask = await fake.slash(
            alpha.guild_id, thread_id, alpha.member, "ask", question="And rollbacks?"
        )
        await fake.wait_for(lambda: finished(fake, answer_ids(fake, ask)))
        thread = await bot.core.store.thread_messages(f"discord:{alpha.guild_id}:{thread_id}")
        assert [m.text for m in thread if m.role == "user"] == [
            "How do I deploy?",
            "Who approves?",
            "And rollbacks?",
        ]


@pytest.mark.parametrize("content_intent", [False, True])
async def test_follow_ups_without_a_mention_need_the_message_content_intent(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings, content_intent: bool
) -> None:
    alpha = servers[0]
    settings = discord_settings(
        fake_settings,
        fake,
        discord_thread_per_question=True,
        discord_message_content=content_intent,
    )
    async with running_bot(settings, fake) as bot:
        question = await fake.say(
            alpha.guild_id, alpha.channel_id, alpha.member, "How do I deploy?", mention_bot=True
        )
        thread_id = question["id"]
        await fake.wait_for(lambda: finished(fake, bot_replies(fake, thread_id)))
        await fake.say(alpha.guild_id, thread_id, alpha.member, "Who approves it?")
        await fake.say(alpha.guild_id, thread_id, alpha.member, "Any rollback?", mention_bot=True)
        expected = 3 if content_intent else 2
        await fake.wait_for(
            lambda: (
                len(bot_replies(fake, thread_id)) == expected
                and finished(fake, bot_replies(fake, thread_id)[-1:])
            )
        )
        thread = await bot.core.store.thread_messages(f"discord:{alpha.guild_id}:{thread_id}")
        asked = {m.text for m in thread if m.role == "user"}
        assert ("Who approves it?" in asked) is content_intent
        assert "Any rollback?" in asked
    assert bool(fake.identify_payloads[-1]["intents"] & (1 << 15)) is content_intent


async def test_long_answer_continues_in_follow_ups_with_balanced_code_fences(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    await set_key(bot, alpha)
    code = "\n".join(f"step_{n} = run('make release --stage {n}')" for n in range(60))
    long_answer = "Here is the script:\n\n```python\n" + code + "\n```\n\n" + "Done [1]. " * 150
    fake_openai.reply(*[long_answer[i : i + 300] for i in range(0, len(long_answer), 300)])
    interaction = await fake.slash(
        alpha.guild_id,
        alpha.channel_id,
        alpha.member,
        "ask",
        question="How do I deploy with make release?",
    )
    messages = await fake.wait_for(lambda: finished(fake, answer_ids(fake, interaction)))
    assert len(messages) >= 3, [m["content"][:300] for m in messages]
    for message in messages:
        assert len(message["content"]) <= 2000
        assert message["content"].count("```") % 2 == 0, message["content"]
    assert [bool(buttons(m)) for m in messages] == [False] * (len(messages) - 1) + [True]
    shown = "".join(m["content"] for m in messages)
    assert "step_59 = run('make release --stage 59')" in shown


async def test_model_failure_mid_stream_leaves_a_visible_failure_without_buttons(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    await set_key(bot, alpha)
    fake_openai.reply("Deploy with", " make", " release", fail_after=2, interval=0.05)
    interaction = await fake.slash(
        alpha.guild_id, alpha.channel_id, alpha.member, "ask", question="How do I deploy?"
    )
    message = await fake.wait_for(lambda: failed(fake, interaction.original_id))
    assert message["content"].startswith("Deploy with make")  # what had arrived stays
    assert buttons(message) == []
    assert not message["loading"]


@pytest.mark.parametrize("fake", [(2, 1.0, False)], indirect=True)
@pytest.mark.parametrize("via", ["ask", "mention"])
async def test_429s_reach_the_editor_instead_of_discord_py_sleeping(
    fake: FakeDiscord,
    fake_openai: FakeOpenAI,
    servers: list[Server],
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
    via: str,
) -> None:
    # The editor believes in 20 writes a second; this Discord allows 2 and doesn't say so in
    # advance (like its shared per-channel cap), so it answers 429s.
    alpha = servers[0]
    await set_key(bot, alpha)
    words = [f" word{n}" for n in range(40)]
    fake_openai.reply(*words, interval=0.02)
    caplog.set_level(logging.WARNING, logger="discord")
    if via == "ask":
        interaction = await fake.slash(
            alpha.guild_id, alpha.channel_id, alpha.member, "ask", question="How do I deploy?"
        )
        ids = lambda: answer_ids(fake, interaction)  # noqa: E731
    else:
        await fake.say(
            alpha.guild_id, alpha.channel_id, alpha.member, "How do I deploy?", mention_bot=True
        )
        ids = lambda: bot_replies(fake, alpha.channel_id)  # noqa: E731
    [message] = await fake.wait_for(lambda: finished(fake, ids()), 60)
    assert "".join(words).strip() in message["content"]
    assert fake.rate_limited > 0
    # discord.py would have logged and slept on each 429 had it handled them itself.
    assert "We are being rate limited" not in caplog.text
    assert "is rate limited" not in caplog.text


async def test_model_output_cannot_ping_anyone(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    await set_key(bot, alpha)
    fake_openai.reply(f"Hey @everyone and @here, <@{alpha.admin}> <@&{alpha.guild_id}> [1].")
    await fake.say(
        alpha.guild_id, alpha.channel_id, alpha.member, "How do I deploy?", mention_bot=True
    )
    [answer] = await fake.wait_for(lambda: finished(fake, bot_replies(fake, alpha.channel_id)))
    assert "@everyone" in answer["content"]
    writes = [
        body
        for method, path, body in fake.requests
        if method in ("POST", "PATCH") and "messages" in path and isinstance(body, dict)
    ]
    assert writes
    for body in writes:
        mentions = body["allowed_mentions"]
        assert mentions["parse"] == [] and not mentions.get("replied_user")
        assert not mentions.get("users") and not mentions.get("roles")


async def test_feedback_is_stored_with_the_answer_and_servers_are_kept_apart(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha, beta = servers
    interaction = await fake.slash(
        alpha.guild_id, alpha.channel_id, alpha.member, "ask", question="How do I deploy?"
    )
    [message] = await fake.wait_for(lambda: finished(fake, answer_ids(fake, interaction)))
    up, down = buttons(message)
    answer_id = int(up.rsplit(":", 1)[1])

    # A click arriving from the other server can't touch this server's answer.
    stranger = await fake.click(beta.guild_id, beta.channel_id, beta.member, message["id"], down)
    reply = await fake.wait_for(lambda: stranger.callbacks)
    assert reply[0]["data"]["flags"] & 64 and "can't" in reply[0]["data"]["content"]
    assert (await bot.core.store.get_message(answer_id)).feedback is None  # type: ignore[union-attr]

    click = await fake.click(alpha.guild_id, alpha.channel_id, alpha.member, message["id"], up)
    reply = await fake.wait_for(lambda: click.callbacks)
    assert reply[0]["data"]["flags"] & 64 and "Thanks" in reply[0]["data"]["content"]
    stored = await bot.core.store.get_message(answer_id)
    assert stored is not None and stored.feedback == 1

    # Beta's own conversation is separate: its question never sees alpha's history.
    other = await fake.slash(
        beta.guild_id, beta.channel_id, beta.member, "ask", question="Vacation days?"
    )
    await fake.wait_for(lambda: finished(fake, answer_ids(fake, other)))
    thread = await bot.core.store.thread_messages(
        f"discord:{beta.guild_id}:{beta.channel_id}:{other.id}"
    )
    assert [m.text for m in thread if m.role == "user"] == ["Vacation days?"]


async def test_stopping_the_bot_mid_answer_leaves_a_visible_end_state(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    settings = discord_settings(fake_settings, fake, shutdown_grace_seconds=1)
    async with running_bot(settings, fake) as bot:
        await set_key(bot, alpha)
        fake_openai.reply("Deploy", " with", " make release", stall_after=1, stall=60)
        interaction = await fake.slash(
            alpha.guild_id, alpha.channel_id, alpha.member, "ask", question="How do I deploy?"
        )
        await fake.wait_for(
            lambda: (
                "Deploy" in fake.messages.get(interaction.original_id or "", {}).get("content", "")
            )
        )
    fake_openai.release()
    message = fake.messages[interaction.original_id or ""]
    assert message["content"].startswith("Deploy")
    assert message["content"].endswith(INTERRUPTED)  # not left "thinking" forever
    assert buttons(message) == []
