"""Forum channels listed in DISCORD_FORUM_CHANNELS: every new post is answered in the post, once,
within the allowed servers and the question limits; other forums are left alone."""

from __future__ import annotations

from bot.settings import Settings
from tests.discord.discord_rig import Server, discord_settings, running_bot
from tests.discord.test_discord import bot_replies, finished
from tests.fakes.discord import FakeDiscord


async def test_a_new_post_in_a_listed_forum_is_answered_in_the_post_once(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    forum = fake.add_forum(alpha.guild_id, "help")
    other = fake.add_forum(alpha.guild_id, "chat")
    feed = fake.add_user("release-feed")
    fake.users[feed]["bot"] = True
    # A text channel listed by mistake: its threads are not forum posts.
    listed = [forum, alpha.channel_id]
    settings = discord_settings(
        fake_settings, fake, discord_forum_channels=listed, discord_message_content=True
    )
    async with running_bot(settings, fake) as bot:
        ignored = await fake.forum_post(
            alpha.guild_id, other, alpha.member, "Vacation?", "How many vacation days?"
        )
        chat = await fake.open_thread(alpha.guild_id, alpha.channel_id, alpha.member, "Deploy?")
        fed = await fake.forum_post(alpha.guild_id, forum, feed, "v2.1 released", "Deploy notes")
        # Mentioning the bot in the post too must not get it a second answer.
        post = await fake.forum_post(
            alpha.guild_id,
            forum,
            alpha.member,
            "Deploying",
            "How do I deploy to production?",
            mention_bot=True,
        )
        [answer] = await fake.wait_for(lambda: finished(fake, bot_replies(fake, post["id"])))
        assert "make release" in answer["content"] and "deploy.md" in answer["content"]
        key = f"discord:{alpha.guild_id}:{post['id']}"
        [asked] = [m.text for m in await bot.core.store.thread_messages(key) if m.role == "user"]
        assert asked == "Deploying\n\nHow do I deploy to production?"  # title, then the post

        # A follow-up in the post continues it (the content intent is on: no mention needed).
        await fake.say(alpha.guild_id, post["id"], alpha.member, "And vacation days?")
        await fake.wait_for(
            lambda: (
                len(bot_replies(fake, post["id"])) == 2
                and finished(fake, bot_replies(fake, post["id"])[1:])
            )
        )
        # By now the mention in the post and the other forum's post were handled long ago.
        assert bot_replies(fake, ignored["id"]) == []
        assert bot_replies(fake, chat) == [] and bot_replies(fake, fed["id"]) == []
        assert len(await bot.core.store.thread_messages(key)) == 4


async def test_forum_posts_respect_the_allowed_servers_and_the_question_limit(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    alpha, beta = servers
    alpha_forum, beta_forum = fake.add_forum(alpha.guild_id), fake.add_forum(beta.guild_id)
    settings = discord_settings(
        fake_settings,
        fake,
        discord_forum_channels=[alpha_forum, beta_forum],
        discord_allowed_guilds=[alpha.guild_id],
        questions_per_minute_per_user=1,
    )
    async with running_bot(settings, fake):
        refused = await fake.forum_post(beta.guild_id, beta_forum, beta.member, "Deploy?", "")
        first = await fake.forum_post(alpha.guild_id, alpha_forum, alpha.member, "Deploy?", "")
        await fake.wait_for(lambda: finished(fake, bot_replies(fake, first["id"])))
        second = await fake.forum_post(alpha.guild_id, alpha_forum, alpha.member, "Vacation?", "")
        [slow_down] = await fake.wait_for(lambda: finished_or_any(fake, second["id"]))
        assert "minute" in slow_down["content"]  # over the person's limit: told, not answered
        assert bot_replies(fake, refused["id"]) == []  # a server the bot doesn't serve


def finished_or_any(fake: FakeDiscord, channel_id: str) -> list[dict[str, object]] | None:
    replies = [fake.messages[m] for m in bot_replies(fake, channel_id)]
    done = [m for m in replies if "⏳" not in str(m["content"]) and "Thinking" not in str(m)]
    return done or None
