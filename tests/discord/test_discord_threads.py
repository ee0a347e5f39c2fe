"""Discord's native places for an answer, end to end with real discord.py against the fake
Discord: "Ask about this message" answers in a thread opened on the message, `/ask thread:true`
in a thread opened on its reply, and follow-ups in those threads continue the conversation."""

from __future__ import annotations

from typing import Any

from adapters.discord.answers import ABOUT
from adapters.discord.client import NO_TEXT
from adapters.discord.commands import ASK_ABOUT
from tests.discord.discord_rig import RunningBot, Server
from tests.discord.test_discord import answer_ids, bot_replies, finished
from tests.fakes.discord import EPHEMERAL, FakeDiscord


def thread_calls(fake: FakeDiscord) -> list[list[str]]:
    return [call.parts for call in fake.calls if call.method == "POST" and "threads" in call.parts]


def public_in(fake: FakeDiscord, channel_id: str) -> list[str]:
    """What the bot shows everyone in a channel (its private replies left out)."""
    return [
        m["content"]
        for m in fake.channel_messages(channel_id)
        if m["author"]["id"] == fake.bot_id and not m["flags"] & EPHEMERAL
    ]


async def user_questions(bot: RunningBot, thread_key: str) -> list[str]:
    return [m.text for m in await bot.core.store.thread_messages(thread_key) if m.role == "user"]


async def test_ask_about_a_message_answers_in_a_thread_opened_on_it(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    said = await fake.say(
        alpha.guild_id, alpha.channel_id, alpha.member, "How do we deploy to production?"
    )
    asked = await fake.message_command(
        alpha.guild_id, alpha.channel_id, alpha.admin, ASK_ABOUT, said["id"]
    )
    thread_id = said["id"]  # a thread started from a message takes the message's id
    [answer] = await fake.wait_for(lambda: finished(fake, bot_replies(fake, thread_id)))
    thread = fake.channels[thread_id]
    assert thread["parent_id"] == alpha.channel_id
    assert thread["name"] == "How do we deploy to production?"
    assert "make release" in answer["content"] and "deploy.md" in answer["content"]
    assert public_in(fake, alpha.channel_id) == []  # nothing shown in the channel itself
    # Only the asker sees where the answer went.
    assert asked.callbacks[0]["data"]["flags"] & EPHEMERAL
    pointer = await fake.wait_for(
        lambda: (
            not fake.messages[asked.original_id or ""]["loading"]
            and fake.messages[asked.original_id or ""]
        )
    )
    assert pointer["content"] == f"Answering in <#{thread_id}>."
    key = f"discord:{alpha.guild_id}:{thread_id}"
    [question] = await user_questions(bot, key)
    assert question == f"{ABOUT}\n\n> How do we deploy to production?"

    # A follow-up in the thread continues that conversation, like a mention's thread.
    await fake.say(alpha.guild_id, thread_id, alpha.member, "And vacation days?", mention_bot=True)
    await fake.wait_for(
        lambda: (
            len(bot_replies(fake, thread_id)) == 2
            and finished(fake, bot_replies(fake, thread_id)[1:])
        )
    )
    assert await user_questions(bot, key) == [question, "And vacation days?"]

    # Asked about again: the message already has its thread, and the answer goes there.
    again = await fake.message_command(
        alpha.guild_id, alpha.channel_id, alpha.member, ASK_ABOUT, said["id"]
    )
    await fake.wait_for(
        lambda: (
            len(bot_replies(fake, thread_id)) == 3
            and finished(fake, bot_replies(fake, thread_id)[2:])
        )
    )
    assert fake.messages[again.original_id or ""]["content"] == f"Answering in <#{thread_id}>."
    assert len(await user_questions(bot, key)) == 3


async def test_ask_about_a_message_without_text_says_so_privately(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    said = await fake.say(alpha.guild_id, alpha.channel_id, alpha.member, "")
    asked = await fake.message_command(
        alpha.guild_id, alpha.channel_id, alpha.admin, ASK_ABOUT, said["id"]
    )
    [reply] = await fake.wait_for(lambda: asked.callbacks)
    assert reply["type"] == 4 and reply["data"]["flags"] & EPHEMERAL
    assert reply["data"]["content"] == NO_TEXT
    assert thread_calls(fake) == []


async def test_ask_with_thread_opens_a_thread_on_the_question_for_answer_and_follow_ups(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    asked = await fake.slash(
        alpha.guild_id,
        alpha.channel_id,
        alpha.member,
        "ask",
        question="How many vacation days do I get?",
        thread=True,
    )
    reply_id = await fake.wait_for(lambda: asked.original_id)
    thread_id = await fake.wait_for(lambda: reply_id in fake.channels and reply_id)
    [answer] = await fake.wait_for(lambda: finished(fake, bot_replies(fake, thread_id)))
    reply: dict[str, Any] = fake.messages[reply_id]
    assert reply["content"] == "**Question:** How many vacation days do I get?"
    assert not reply["flags"] & EPHEMERAL  # the channel sees the question the thread hangs on
    assert fake.channels[thread_id]["name"] == "How many vacation days do I get?"
    assert "25 days" in answer["content"]
    key = f"discord:{alpha.guild_id}:{thread_id}"
    await fake.say(alpha.guild_id, thread_id, alpha.member, "How do I deploy?", mention_bot=True)
    await fake.wait_for(
        lambda: (
            len(bot_replies(fake, thread_id)) == 2
            and finished(fake, bot_replies(fake, thread_id)[1:])
        )
    )
    assert await user_questions(bot, key) == [
        "How many vacation days do I get?",
        "How do I deploy?",
    ]


async def test_ask_about_a_message_in_a_thread_answers_in_place(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    thread_id = await fake.open_thread(alpha.guild_id, alpha.channel_id, alpha.member, "Ops")
    said = await fake.say(alpha.guild_id, thread_id, alpha.member, "How do we deploy?")
    asked = await fake.message_command(
        alpha.guild_id, thread_id, alpha.admin, ASK_ABOUT, said["id"]
    )
    [message] = await fake.wait_for(lambda: finished(fake, answer_ids(fake, asked)))
    assert "make release" in message["content"]
    assert not message["flags"] & EPHEMERAL  # the thread sees the answer
    assert thread_calls(fake) == []  # no thread inside a thread
    key = f"discord:{alpha.guild_id}:{thread_id}"  # the thread's own conversation
    assert len(await user_questions(bot, key)) == 1


async def test_a_long_message_asked_about_is_quoted_whole(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    # 2,009 characters (Nitro members may send 4,000): the question holds it with room to spare.
    text = "How do we deploy the release? " * 67
    said = await fake.say(alpha.guild_id, alpha.channel_id, alpha.member, text)
    await fake.message_command(alpha.guild_id, alpha.channel_id, alpha.admin, ASK_ABOUT, said["id"])
    thread_id = said["id"]
    await fake.wait_for(lambda: finished(fake, bot_replies(fake, thread_id)))
    [question] = await user_questions(bot, f"discord:{alpha.guild_id}:{thread_id}")
    assert question == f"{ABOUT}\n\n> {text.strip()}"
