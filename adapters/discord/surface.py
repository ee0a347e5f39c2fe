"""Where a Discord answer is shown: the deferred /ask response or a reply to a mention.

The streaming editor in `bot/` decides when to post and edit; these surfaces make the calls with
mentions switched off and link previews suppressed, attach the 👍/👎 buttons on the final write,
and turn Discord's refusals into the core's errors. discord.py retries 429s by sleeping, which
would hide them from the editor's shared budget, so within a surface call a 429 is raised as
`PlatformRateLimited` instead.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
from discord.http import handle_message_parameters
from discord.utils import MISSING
from discord.webhook.async_ import async_context

from bot.errors import PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.retry_after import retry_after
from bot.settings import Settings
from bot.surface import BudgetSpec, Final, LimitedSurface, Limits

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000  # characters in one message's content
NO_MENTIONS = discord.AllowedMentions.none()  # model output must never ping anyone
# Every answer write carries SUPPRESS_EMBEDS: Discord's crawler fetches each link a message shows
# to preview it, so a URL quoted from a document (an internal one, one with a token in it) would
# be fetched from Discord's servers without anyone clicking it.
SUPPRESS_EMBEDS = discord.MessageFlags(suppress_embeds=True)
FEEDBACK_PATTERN = r"feedback:(?P<direction>up|down):(?P<answer_id>[0-9]+)"
DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 names no wait
# discord.py sleeps out an exhausted bucket before it returns the response Discord counted long
# before: a call counts from its grant plus this at the latest (bot.surface.BudgetSpec).
HELD_RESPONSE_BOUND = 1.0
HTTP_SERVER_ERROR = 500

# Set while a surface call runs, so only its 429s and 5xx surface: discord.py would sleep on a
# 429 and retry a 5xx up to five times, outside the editor's budget; the editor's budget and
# backoff decide instead. Startup calls keep discord.py's own retries.
_surfacing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "discord_surfacing", default=False
)

# Remembers which conversation a message the bot posted belongs to (reply-chain follow-ups).
Remember = Callable[[str], Awaitable[None]]


class _Surfaced429(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429; retry after {retry_after:.2f}s")
        self.retry_after = retry_after


class _Surfaced5xx(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")


def rate_limit_trace() -> aiohttp.TraceConfig:
    """An aiohttp trace that raises on a 429 or a 5xx during a surface call, before discord.py
    can sleep or retry."""

    async def on_request_end(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        if not _surfacing.get():
            return
        if params.response.status == 429:
            raise _Surfaced429(_retry_after(params.response.headers))
        if params.response.status >= HTTP_SERVER_ERROR:
            raise _Surfaced5xx(params.response.status)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


def _retry_after(headers: Any) -> float:
    # Discord's own header is exact to the millisecond; Retry-After is the fallback.
    asked = retry_after(headers, first=("X-RateLimit-Reset-After",))
    return DEFAULT_RETRY_AFTER if asked is None else asked


@asynccontextmanager
async def platform_call(what: str) -> AsyncIterator[None]:
    """Run one Discord call; raise the core's platform errors (never with a token in them)."""
    token = _surfacing.set(True)
    try:
        yield
    except _Surfaced429 as error:
        raise PlatformRateLimited(error.retry_after) from None
    except _Surfaced5xx as error:
        raise PlatformUnavailable(f"Discord failed {what}: {error}") from None
    except discord.RateLimited as error:
        raise PlatformRateLimited(error.retry_after) from None
    except discord.HTTPException as error:
        if error.status == 429:
            raise PlatformRateLimited(_retry_after(error.response.headers)) from None
        # The text may echo a webhook URL with the interaction token: keep status and code only.
        detail = f"Discord refused {what}: HTTP {error.status}, code {error.code}"
        if error.status >= HTTP_SERVER_ERROR:
            raise PlatformUnavailable(detail) from None
        raise PlatformError(detail) from None
    except (aiohttp.ClientError, OSError) as error:
        # Worth another try: a dropped connection, or a timeout (TimeoutError is an OSError).
        raise PlatformUnavailable(
            f"Discord unreachable during {what}: {type(error).__name__}"
        ) from None
    finally:
        _surfacing.reset(token)


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=FEEDBACK_PATTERN):
    """👍 or 👎 under a finished answer; its custom id carries the answer, so it outlives restarts.

    Not sent as is: `feedback_buttons(handler)` makes the subclass the client registers and the
    surfaces send, whose clicks reach `handler` (discord.py dispatches a click to the class of
    the button last sent with that custom id pattern, so both must be the same class).
    """

    def __init__(self, answer_id: int, direction: str) -> None:
        emoji = "👍" if direction == "up" else "👎"
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji=emoji,
                custom_id=f"feedback:{direction}:{answer_id}",
            )
        )
        self.answer_id = answer_id
        self.value = 1 if direction == "up" else -1

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: Any,
        /,
    ) -> FeedbackButton:
        return cls(int(match["answer_id"]), match["direction"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        log.error("a feedback button was clicked but never wired to a handler")


FeedbackHandler = Callable[[discord.Interaction[Any], int, int], Awaitable[None]]


def feedback_buttons(handler: FeedbackHandler) -> type[FeedbackButton]:
    """The feedback button whose clicks call `handler(interaction, answer_id, +1 or -1)`."""

    class WiredFeedbackButton(FeedbackButton, template=FEEDBACK_PATTERN):
        async def callback(self, interaction: discord.Interaction[Any]) -> None:
            await handler(interaction, self.answer_id, self.value)

    return WiredFeedbackButton


def feedback_view(final: Final | None, buttons: type[FeedbackButton]) -> discord.ui.View | None:
    """The buttons for a final write; None while streaming or when the answer failed."""
    if final is None or final.answer_id is None:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(buttons(final.answer_id, "up"))
    view.add_item(buttons(final.answer_id, "down"))
    return view


class _DiscordSurface(LimitedSurface):
    """What both surfaces share: Discord's limits and the per-channel budget."""

    shows_waiting_for_itself = False  # see InteractionSurface

    def __init__(
        self,
        settings: Settings,
        channel_id: int,
        remember: Remember,
        buttons: type[FeedbackButton],
    ) -> None:
        # Creates and edits share one per-channel limit, so both name the same budget.
        budget = BudgetSpec(
            f"discord:channel:{channel_id}",
            settings.discord_edit_rate,
            settings.discord_edit_window,
            arrival_bound=HELD_RESPONSE_BOUND,
        )
        super().__init__(
            Limits(MESSAGE_LIMIT, budget, budget, shows_waiting=self.shows_waiting_for_itself)
        )
        self._remember = remember
        self._buttons = buttons

    def render(self, markdown: str) -> str:
        return markdown  # Discord renders markdown itself


class InteractionSurface(_DiscordSurface):
    """/ask: the first post fills the deferred response; later ones are follow-up messages."""

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        settings: Settings,
        remember: Remember,
        buttons: type[FeedbackButton],
    ) -> None:
        super().__init__(settings, interaction.channel_id or 0, remember, buttons)
        self._interaction = interaction
        self._original_id: str | None = None

    # The deferred response already reads "<bot> is thinking…"; a placeholder edit would only
    # spend one of the channel's five writes per five seconds.
    shows_waiting_for_itself = True

    async def post(self, text: str, *, final: Final | None = None) -> str:
        view = feedback_view(final, self._buttons)
        async with platform_call("posting an answer"):
            if self._original_id is None:
                # The deferred response was created without the flag (defer() takes none).
                self._original_id = await edit_interaction_message(
                    self._interaction, None, text, view
                )
                message_id = self._original_id
            else:
                followup = await self._interaction.followup.send(
                    text,
                    wait=True,
                    allowed_mentions=NO_MENTIONS,
                    suppress_embeds=True,
                    **_view(view),
                )
                message_id = str(followup.id)
        await self._remember(message_id)
        return message_id

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        view = feedback_view(final, self._buttons)
        async with platform_call("editing an answer"):
            followup_id = None if message_id == self._original_id else message_id
            await edit_interaction_message(self._interaction, followup_id, text, view)


async def edit_interaction_message(
    interaction: discord.Interaction[Any],
    followup_id: str | None,
    text: str,
    view: discord.ui.View | None,
) -> str:
    """Edit the interaction's response (no `followup_id`) or one of its follow-ups with
    SUPPRESS_EMBEDS; return the message id.

    discord.py (2.7) takes no flags in edit_original_response or Webhook.edit_message, so this is
    their body with `flags` added, sent through discord.py's own webhook adapter on the client's
    session (its retries, and this module's 429 trace, apply as before). The view's buttons are
    dynamic items the client registered, so the view needs no storing for clicks to arrive.
    """
    webhook = interaction.followup  # the application's webhook: the client's session and proxy
    adapter = async_context.get()
    with handle_message_parameters(
        content=text,
        allowed_mentions=NO_MENTIONS,
        view=view if view is not None else MISSING,
        flags=SUPPRESS_EMBEDS,
    ) as params:
        app_id, token = interaction.application_id, interaction.token
        if followup_id is None:
            data = await adapter.edit_original_interaction_response(
                app_id,
                token,
                session=webhook.session,
                proxy=webhook.proxy,
                proxy_auth=webhook.proxy_auth,
                payload=params.payload,
                multipart=params.multipart,
                files=params.files,
            )
        else:
            data = await adapter.edit_webhook_message(
                app_id,
                token,
                int(followup_id),
                session=webhook.session,
                proxy=webhook.proxy,
                proxy_auth=webhook.proxy_auth,
                payload=params.payload,
                multipart=params.multipart,
                files=params.files,
            )
    return str(data["id"])


# The channels a mention can arrive in and be answered in.
MessageChannel = (
    discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.PartialMessageable
)


class MessageSurface(_DiscordSurface):
    """A mention: replies to the question (or posts in its thread), then edits those replies."""

    def __init__(
        self,
        channel: MessageChannel,
        settings: Settings,
        remember: Remember,
        buttons: type[FeedbackButton],
        *,
        reference: discord.Message | discord.PartialMessage | None = None,
    ) -> None:
        super().__init__(settings, channel.id, remember, buttons)
        self._channel = channel
        self._reference = reference
        # The messages posted, for their edits: discord.py sets flags on an edit only through a
        # whole Message's edit(suppress=...), not a PartialMessage's.
        self._posted: dict[str, discord.Message] = {}

    async def post(self, text: str, *, final: Final | None = None) -> str:
        view = feedback_view(final, self._buttons)
        async with platform_call("posting an answer"):
            if self._reference is not None:
                message = await self._channel.send(
                    text,
                    reference=self._reference.to_reference(fail_if_not_exists=False),
                    mention_author=False,
                    allowed_mentions=NO_MENTIONS,
                    suppress_embeds=True,
                    **_view(view),
                )
            else:
                message = await self._channel.send(
                    text, allowed_mentions=NO_MENTIONS, suppress_embeds=True, **_view(view)
                )
        self._posted[str(message.id)] = message
        await self._remember(str(message.id))
        return str(message.id)

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        view = feedback_view(final, self._buttons)
        message = self._posted[message_id]  # the editor edits only what this surface posted
        async with platform_call("editing an answer"):
            await message.edit(
                content=text, allowed_mentions=NO_MENTIONS, suppress=True, **_view(view)
            )


def _view(view: discord.ui.View | None) -> dict[str, Any]:
    # Passing view=None would strip existing components; leave it out unless there is one.
    return {"view": view} if view is not None else {}
