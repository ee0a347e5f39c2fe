"""The benchmark's naive Discord baseline: the common "edit on every N tokens" bot.

A plain discord.py client with one `/ask` command: defer, stream the model's answer, edit the
response every NAIVE_EVERY tokens and once more at the end. No budget of its own, no retrieval;
429s are left to discord.py's own handling, which is what the benchmark compares against.
The only concession to the fake Discord: mentions are switched off, which it insists on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route
from openai import AsyncOpenAI

DEFAULT_EVERY = 20  # tokens between edits
DEFAULT_MODEL = "gpt-fake-mini"

log = logging.getLogger("bench.discord_naive")


class NaiveBot(discord.Client):
    def __init__(self, guild_ids: list[int], every: int, model: str) -> None:
        super().__init__(
            intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none()
        )
        self.tree = app_commands.CommandTree(self)
        self.guild_ids = guild_ids
        self.every = every
        self.model = model
        self.openai = AsyncOpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment

        @self.tree.command(name="ask", description="Ask a question")
        async def ask(interaction: discord.Interaction[Any], question: str) -> None:
            await self.answer(interaction, question)

    async def setup_hook(self) -> None:
        for guild_id in self.guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        if not self.guild_ids:
            await self.tree.sync()

    async def answer(self, interaction: discord.Interaction[Any], question: str) -> None:
        await interaction.response.defer(thinking=True)
        stream = await self.openai.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": question}], stream=True
        )
        text, tokens = "", 0
        async for chunk in stream:
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if not delta:
                continue
            text += delta
            tokens += 1
            if tokens % self.every == 0:
                await interaction.edit_original_response(content=text)
        await interaction.edit_original_response(content=text or "(no answer)")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    # discord.py has no setting for its endpoints; the same two class attributes the adapter
    # sets (adapters/discord/run.py: discord_endpoints) point it at the fake.
    if api_url := os.environ.get("DISCORD_API_URL"):
        Route.BASE = api_url.rstrip("/")
    if gateway_url := os.environ.get("DISCORD_GATEWAY_URL"):
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    guild_ids = [int(g) for g in os.environ.get("DISCORD_GUILD_IDS", "").split(",") if g.strip()]
    bot = NaiveBot(
        guild_ids,
        int(os.environ.get("NAIVE_EVERY", DEFAULT_EVERY)),
        os.environ.get("CHAT_MODEL", DEFAULT_MODEL),
    )
    asyncio.run(_run(bot, os.environ["DISCORD_TOKEN"]))


async def _run(bot: NaiveBot, token: str) -> None:
    async with bot:
        await bot.start(token)


if __name__ == "__main__":
    main()
