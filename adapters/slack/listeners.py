"""What each Slack event, command and click becomes: one core call, run as a tracked task.

A mention, a follow-up in a thread the bot answers in, or a direct message becomes one
`conversations.reply` into the surface `surfaces.SurfaceChoice` picks for that thread (a native
stream in DMs while the workspace's budget has room, else a `SlackSurface`); /setkey becomes one
`keys` call (or, alone, opens its form, whose submission becomes that call); a feedback click one
`conversations.feedback`; an uninstall deletes the workspace's key and tokens.

Listeners only acknowledge and hand the work to a tracked task: bolt's default
(`process_before_response=False`) and its lazy listeners both run work in untracked
`asyncio.ensure_future` tasks, which the loop may garbage-collect and shutdown cannot wait for.
Here every answer is a task held in `Background` and drained on shutdown (a cancelled answer
still leaves a visible "cancelled" state), and the ack goes out as soon as the task is created.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.assistant import AssistantThreads, status_shown
from adapters.slack.feedback import FEEDBACK, FEEDBACK_DOWN, FEEDBACK_UP, vote
from adapters.slack.formats import SlackFormats
from adapters.slack.install import SlackInstallationStore, workspace_id
from adapters.slack.reopen import address
from adapters.slack.setkey import Asker, SetKey
from adapters.slack.setkey_form import CALLBACK_ID, SetKeyForm
from adapters.slack.surfaces import SurfaceChoice, stream_counter
from adapters.slack.web_api import call_slack, unescape
from bot.background import Background
from bot.errors import BotError

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core

log = logging.getLogger(__name__)

# Message subtypes that are still a person writing to the bot (edits, deletions, joins are not).
ANSWERED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
EMPTY_MENTION_HINT = "Ask me a question after the mention, e.g. “@bot how do I reset my password?”"
FEEDBACK_THANKS = "Thanks for the feedback."
FEEDBACK_GONE = "That answer is no longer stored, so the feedback could not be saved."


class Listeners:
    def __init__(
        self,
        core: Core,
        tasks: Background,
        installations: SlackInstallationStore | None,
        formats: SlackFormats,
    ) -> None:
        self._core = core
        self._settings = core.settings
        self._tasks = tasks
        self._installations = installations
        self._formats = formats
        self.surfaces = SurfaceChoice(
            core.settings, core.editor, formats, stream_counter(core.settings, core.shared)
        )
        self._setkey = SetKey(core.settings, core.keys)
        self._form = SetKeyForm(self._setkey, tasks)

    def register(self, app: AsyncApp) -> None:
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.event("app_uninstalled")(self.on_uninstalled)
        app.event("tokens_revoked")(self.on_tokens_revoked)
        app.command("/setkey")(self.on_setkey)
        app.view(CALLBACK_ID)(self.on_setkey_form)
        app.action(FEEDBACK_UP)(self.on_feedback)
        app.action(FEEDBACK_DOWN)(self.on_feedback)
        app.action(FEEDBACK)(self.on_feedback)  # Slack's feedback buttons element
        # Questions in the agent view's threads: before `message`, which they then skip.
        app.assistant(AssistantThreads(self._core, self._tasks, self._reply).middleware())

    # -- questions ----------------------------------------------------------------------------

    async def on_mention(
        self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        if str(event.get("channel", "")).startswith("D"):
            return  # a direct message arrives as a `message` event too; answer it there
        self._answer(event, context, client)

    async def on_message(
        self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        if event.get("subtype") not in ANSWERED_SUBTYPES or event.get("bot_id"):
            return  # edits, deletions, joins, other bots and our own posts
        if event.get("channel_type") == "im":
            self._answer(event, context, client)
            return
        thread_ts = event.get("thread_ts")
        bot = context.bot_user_id
        if not thread_ts or (bot and f"<@{bot}" in str(event.get("text", ""))):
            return  # not a thread reply, or a mention (its app_mention event answers it)
        team = _team(context)
        thread_key = f"slack:{team}:{event['channel']}:{thread_ts}"
        self._tasks.spawn(
            self._followup(thread_key, event, context, client), f"slack-followup-{event['ts']}"
        )

    async def _followup(
        self,
        thread_key: str,
        event: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        if await self._core.conversations.is_followup(thread_key):
            await self._reply(event, context, client)

    def _answer(
        self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        self._tasks.spawn(self._reply(event, context, client), f"slack-answer-{event['ts']}")

    async def _reply(
        self,
        event: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
        in_assistant_thread: bool = False,
    ) -> None:
        team = _team(context)
        channel = str(event["channel"])
        thread_ts = str(event.get("thread_ts") or event["ts"])
        question = strip_mention(str(event.get("text", "")), context.bot_user_id)
        user = event.get("user")
        if not question:
            await self._hint(client, channel, thread_ts, user)
            return
        thread_key = f"slack:{team}:{channel}:{thread_ts}"
        workspace = _workspace(context)
        # Followed from now on, so a reply posted while this answer streams needs no mention.
        await self._core.conversations.join(thread_key, workspace)
        # A DM streams natively while the workspace's start/stop budget has room.
        surface = await self.surfaces.surface(
            client, team=team, channel=channel, thread_ts=thread_ts, user=user,
            streamable=event.get("channel_type") == "im",
        )  # fmt: skip
        await self._core.conversations.reply(
            # In an assistant thread its "is thinking…" status shows the wait, not a placeholder.
            surface=status_shown(surface) if in_assistant_thread else surface,
            thread_key=thread_key,
            workspace=workspace,
            question=question,
            author=user,
            # Keyed by the message, not the envelope: a redelivery and the app_mention +
            # message pair Slack sends for one message all claim the same id.
            event_id=f"slack:{team}:{channel}:{event['ts']}",
            address=address(context, team, channel, thread_ts),
        )

    async def _hint(
        self, client: AsyncWebClient, channel: str, thread_ts: str, user: str | None
    ) -> None:
        if user is None:
            return
        try:
            await call_slack(
                "chat.postEphemeral",
                client.chat_postEphemeral(
                    channel=channel, user=user, thread_ts=thread_ts, text=EMPTY_MENTION_HINT
                ),
            )
        except BotError as error:
            log.warning("could not post the mention hint: %s", error.detail)

    # -- /setkey --------------------------------------------------------------------------------

    async def on_setkey(
        self,
        ack: AsyncAck,
        command: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
        respond: AsyncRespond,
    ) -> None:
        # The command text is an API key: it is passed on, never logged.
        text = str(command.get("text") or "")
        notice = self._setkey.ack_text(text)
        await (ack(text=notice) if notice else ack())
        asker = _asker(context, str(command["user_id"]))
        trigger_id = str(command.get("trigger_id") or "")
        response_url = str(command.get("response_url") or "")

        async def open_form() -> str | None:
            return await self._form.open(asker, trigger_id, response_url, client)

        self._tasks.spawn(
            self._setkey.run(text, asker, client=client, respond=respond, open_form=open_form),
            "slack-setkey",
        )

    async def on_setkey_form(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        # Answered within Slack's 3 seconds (its problems shown in the form), not as a task.
        user = str((body.get("user") or {}).get("id", ""))
        await self._form.on_submit(ack, view, _asker(context, user), client)

    # -- feedback -------------------------------------------------------------------------------

    async def on_feedback(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        context: AsyncBoltContext,
        respond: AsyncRespond,
    ) -> None:
        await ack()
        value, answer = vote(action)
        self._tasks.spawn(
            self._feedback(answer, value, body, context, respond),
            "slack-feedback",
        )

    async def _feedback(
        self,
        answer: str,
        value: int,
        body: dict[str, Any],
        context: AsyncBoltContext,
        respond: AsyncRespond,
    ) -> None:
        user = str(body.get("user", {}).get("id", ""))
        saved = answer.isdigit() and await self._core.conversations.feedback(
            int(answer), value, user=user, workspace=_workspace(context)
        )
        await respond(
            text=FEEDBACK_THANKS if saved else FEEDBACK_GONE,
            response_type="ephemeral",
            replace_original=False,
        )

    # -- uninstalls -----------------------------------------------------------------------------

    async def on_uninstalled(self, context: AsyncBoltContext) -> None:
        await self._forget(context)

    async def on_tokens_revoked(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        if event.get("tokens", {}).get("bot"):
            await self._forget(context)

    async def _forget(self, context: AsyncBoltContext) -> None:
        workspace = _workspace(context)
        await self._core.keys.clear(workspace)
        # An org-wide install is one token for every workspace of the org, kept under the org
        # alone (`installation_id`), whichever workspace Slack names in the event.
        org_wide = bool(context.is_enterprise_install and context.enterprise_id)
        if org_wide:  # and so is every key set in one of its workspaces
            await self._core.keys.clear_within(workspace_id(context.enterprise_id, None))
        if self._installations is not None:
            await self._installations.async_delete_all(
                enterprise_id=context.enterprise_id,
                team_id=None if org_wide else context.team_id,
            )
        log.info("Slack app removed from %s: its API key and tokens are deleted", workspace)


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """The question as typed: without the bot's own mention (`<@U123>` or `<@U123|name>`),
    unescaped, line breaks kept (a question may quote code)."""
    if bot_user_id:
        text = re.sub(rf"[ \t]*<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[ \t]*", " ", text)
    return unescape(text).strip()


def _team(context: AsyncBoltContext) -> str:
    return str(context.team_id or context.enterprise_id)


def _workspace(context: AsyncBoltContext) -> str:
    return workspace_id(context.enterprise_id, context.team_id)


def _asker(context: AsyncBoltContext, user: str) -> Asker:
    return Asker(_workspace(context), user, context.team_id, context.enterprise_id)
