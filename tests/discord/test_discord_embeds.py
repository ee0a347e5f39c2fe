"""Links in Discord answers are never previewed: Discord's crawler would fetch a URL from a
document (an internal one included) the moment the answer shows it, without anyone clicking, so
every answer message is posted and edited with SUPPRESS_EMBEDS. Checked at the wire against the
fake Discord, which records each write's flags and previews links as Discord does."""

from __future__ import annotations

from typing import Any

import pytest

from bot.settings import Settings
from tests.discord.discord_rig import (
    RunningBot,
    Server,
    discord_settings,
    running_bot,
)
from tests.discord.test_discord import answer_ids, bot_replies, finished, set_key
from tests.fakes.discord import SUPPRESS_EMBEDS, FakeDiscord
from tests.fakes.openai import FakeOpenAI

STATUS_PAGE = "https://status.intra.example.com/deploy?token=abc"
RUNBOOK = "https://wiki.intra.example.com/runbooks/release"


def assert_never_previewed(fake: FakeDiscord, messages: list[dict[str, Any]]) -> None:
    """No link was fetched or shown as a preview, and every write of these messages that set
    their text asked Discord to suppress embeds."""
    assert fake.crawled == []
    ids = {message["id"] for message in messages}
    texts = [w for w in fake.writes if w.message_id in ids and w.content]
    assert texts, "the answer was never written"
    for write in texts:
        assert write.flags is not None and write.flags & SUPPRESS_EMBEDS, write
    for message in messages:
        assert message["embeds"] == []
        assert message["flags"] & SUPPRESS_EMBEDS


@pytest.mark.parametrize("via", ["ask", "mention"])
async def test_a_streamed_answer_with_links_is_posted_and_edited_without_previews(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot, via: str
) -> None:
    alpha = servers[0]
    await set_key(bot, alpha)
    fake_openai.reply(
        f"Check {STATUS_PAGE}",
        " then run `make release`",
        f" (see [the runbook]({RUNBOOK})) [1].",
        interval=0.05,
    )
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
    [message] = await fake.wait_for(lambda: finished(fake, ids()))
    assert STATUS_PAGE in message["content"] and RUNBOOK in message["content"]
    assert len([w for w in fake.writes if w.message_id == message["id"] and w.content]) >= 2
    assert_never_previewed(fake, [message])


async def test_follow_up_messages_of_a_long_answer_are_not_previewed_either(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    await set_key(bot, alpha)
    long_answer = "".join(f"Step {n}: see {RUNBOOK}/{n} [1].\n" for n in range(120))
    fake_openai.reply(*[long_answer[i : i + 300] for i in range(0, len(long_answer), 300)])
    interaction = await fake.slash(
        alpha.guild_id, alpha.channel_id, alpha.member, "ask", question="How do I deploy?"
    )
    messages = await fake.wait_for(lambda: finished(fake, answer_ids(fake, interaction)))
    assert len(messages) >= 3
    assert f"{RUNBOOK}/119" in messages[-1]["content"]
    assert_never_previewed(fake, messages)


async def test_a_link_quoted_from_a_document_without_a_key_is_not_previewed(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    fake_settings.knowledge_dir.mkdir(parents=True)
    (fake_settings.knowledge_dir / "status.md").write_text(
        f"# Deploy status page\n\nThe deploy status page is {STATUS_PAGE} for the release train.\n"
    )
    async with running_bot(discord_settings(fake_settings, fake), fake):
        await fake.say(
            alpha.guild_id,
            alpha.channel_id,
            alpha.member,
            "where is the deploy status page?",
            mention_bot=True,
        )
        [answer] = await fake.wait_for(lambda: finished(fake, bot_replies(fake, alpha.channel_id)))
    assert STATUS_PAGE in answer["content"]
    assert_never_previewed(fake, [answer])
