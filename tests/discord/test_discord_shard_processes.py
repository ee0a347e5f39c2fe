"""Discord shards split over processes: two real `bot run` processes, DISCORD_SHARD_COUNT=2 and
DISCORD_SHARD_IDS 0 and 1, sharing one DATA_DIR (SQLite in WAL mode takes several processes)
against the fake Discord. Each process gets only its own shard's servers' events and answers
them; only the process running shard 0 syncs the slash commands."""

from __future__ import annotations

from pathlib import Path

from tests.bot_process import bot_run
from tests.discord.discord_rig import KNOWLEDGE, add_servers, finished_reply
from tests.fakes.discord import FakeDiscord

SHARDS = 2
SKIPS_SYNC = "running shard 1 of 2: the process running shard 0 syncs slash commands"


async def test_two_processes_each_answer_only_the_servers_on_their_shard(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    alpha, beta = add_servers(fake, shards=SHARDS)  # alpha on shard 0, beta on shard 1
    (tmp_path / "knowledge").mkdir()
    for name, text in KNOWLEDGE.items():
        (tmp_path / "knowledge" / name).write_text(text)
    # Each process talks to the fake through its own port, so `calls` tell whose request it was.
    ports = {0: fake.port, 1: await fake.listen_also()}

    def settings(shard_id: int) -> dict[str, str]:
        return {
            "DISCORD_TOKEN": fake.token,
            "DISCORD_API_URL": fake.api_url_at(ports[shard_id]),
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "DISCORD_GUILD_IDS": ",".join(fake.guilds),
            "DISCORD_SHARD_COUNT": str(SHARDS),
            "DISCORD_SHARD_IDS": str(shard_id),
        }

    # Shard 1 starts first: were it to sync commands, it would be the one to.
    async with bot_run(tmp_path, settings(1)) as second:
        await fake.wait_for(lambda: fake.live_shards() == {1}, timeout=60)
        async with bot_run(tmp_path, settings(0)) as first:
            await fake.wait_for(lambda: fake.live_shards() == {0, 1}, timeout=60)
            asked = [
                await fake.say(
                    s.guild_id, s.channel_id, s.member, "How do I deploy?", mention_bot=True
                )
                for s in (alpha, beta)
            ]
            replies = [await fake.wait_for(lambda q=q: finished_reply(fake, q)) for q in asked]
            assert await first.stop() == 0
        assert await second.stop() == 0

    assert [p["shard"] for p in fake.identify_payloads] == [[1, SHARDS], [0, SHARDS]]
    for shard_id, (server, question, reply) in enumerate(
        zip((alpha, beta), asked, replies, strict=True)
    ):
        # The question went down its shard's session only, and that process answered it once.
        assert [m["id"] for m in fake.received("MESSAGE_CREATE", shard_id)] == [question["id"]]
        assert "make release" in reply["content"]
        bot_messages = [
            m for m in fake.channel_messages(server.channel_id) if m["author"]["id"] == fake.bot_id
        ]
        assert bot_messages == [reply]
        writers = {c.port for c in fake.calls if c.parts[:2] == ["channels", server.channel_id]}
        assert writers == {ports[shard_id]}
    # Commands: synced by the shard 0 process only, though shard 1 started first.
    assert sorted(fake.command_syncs) == sorted(fake.guilds)
    assert {c.port for c in fake.calls if c.method == "PUT"} == {ports[0]}
    assert SKIPS_SYNC in second.log.read_text()
    assert SKIPS_SYNC not in first.log.read_text()
