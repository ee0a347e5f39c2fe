"""Slack's assistant threads (the app's DM/agent view), through bolt's `AsyncAssistant`.

A new thread gets the suggested prompts (`core.suggested_questions`, made from the knowledge's
headings). A question in a thread shows "is thinking…" with loading messages while the answer is
looked for (assistant.threads.setStatus), titles a new thread after it, and is answered into the
thread like any DM (`Listeners` answers it, history and all); the status is cleared when the
answer ends, failed or not. Each becomes a tracked task, as every Slack answer does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.set_status.async_set_status import AsyncSetStatus
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import (
    AsyncSetSuggestedPrompts,
)
from slack_bolt.context.set_title.async_set_title import AsyncSetTitle
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.web_api import call_slack, unescape
from bot.background import Background
from bot.errors import ANSWER_CRASHED, BotError
from bot.surface import PassThroughSurface, Surface

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core

log = logging.getLogger(__name__)

PROMPTS_TITLE = "Try asking"
THINKING = "is thinking…"
# Shown in turn under the status while the answer is looked for (Slack takes at most 10).
LOADING_MESSAGES = ("Searching the documents…", "Reading the passages…", "Writing the answer…")
CLEARED = ""  # setStatus with an empty status takes it away
TITLE_CHARS = 80  # a thread's title in the history list: the question, cut to a line
RETRY_HEADER = "x-slack-retry-num"  # on redeliveries (bolt adds it in Socket Mode too)

# Answers one question in a thread: (event, context, client, status_shown).
Reply = Callable[
    [dict[str, Any], AsyncBoltContext, AsyncWebClient, bool], Coroutine[Any, Any, None]
]


def status_shown(surface: Surface) -> Surface:
    """An answer's surface in an assistant thread: the thread's status already shows that an
    answer is coming, so the editor posts no placeholder (Slack would clear the status as soon
    as the app posts) and makes its first post when there is text."""
    return _StatusShown(surface)


class _StatusShown(PassThroughSurface):
    """`inner`, waiting shown by the thread's status; everything else passes through."""

    @property
    def shows_waiting(self) -> bool:
        return True


class AssistantThreads:
    """The assistant's listeners: `middleware()` is what the bolt app takes (`app.assistant`)."""

    def __init__(self, core: Core, tasks: Background, reply: Reply) -> None:
        self._core = core
        self._tasks = tasks
        self._reply = reply

    def middleware(self) -> AsyncAssistant:
        assistant = AsyncAssistant(logger=log)
        assistant.thread_started(self.on_thread_started)
        assistant.user_message(self.on_user_message)
        # The channel a person has open beside the thread: not used for answers, and bolt's
        # default would store it in the thread's first bot message (more Web API calls).
        assistant.thread_context_changed(self.on_context_changed)
        return assistant

    async def on_thread_started(
        self, event: dict[str, Any], set_suggested_prompts: AsyncSetSuggestedPrompts
    ) -> None:
        thread = event.get("assistant_thread", {})
        name = f"slack-assistant-prompts-{thread.get('channel_id')}-{thread.get('thread_ts')}"
        self._tasks.spawn(self._suggest(set_suggested_prompts), name)

    async def _suggest(self, set_suggested_prompts: AsyncSetSuggestedPrompts) -> None:
        questions = await self._core.suggested_questions()
        if not questions:
            return  # nothing indexed yet: Slack's own empty thread is better than no prompts
        prompts = [{"title": q, "message": q} for q in questions]
        try:
            await call_slack(
                "assistant.threads.setSuggestedPrompts",
                set_suggested_prompts(prompts=prompts, title=PROMPTS_TITLE),
            )
        except BotError as error:
            log.warning("could not set the suggested prompts: %s", error.detail)

    async def on_user_message(
        self,
        event: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
        set_status: AsyncSetStatus,
        set_title: AsyncSetTitle,
        request: AsyncBoltRequest,
    ) -> None:
        if event.get("subtype") not in (None, "file_share"):
            return
        if request.headers.get(RETRY_HEADER):
            # A redelivery: the first delivery's answer (already claimed, so this one answers
            # nothing) owns the status; clearing it here would hide that answer's wait.
            work = self._reply(event, context, client, True)
        else:
            work = self._answer(event, context, client, set_status, set_title)
        self._tasks.spawn(work, f"slack-assistant-{event.get('ts')}")

    async def on_context_changed(self) -> None:
        return None

    async def _answer(
        self,
        event: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
        set_status: AsyncSetStatus,
        set_title: AsyncSetTitle,
    ) -> None:
        question = unescape(str(event.get("text") or "")).strip()
        thread = f"slack:{context.team_id or context.enterprise_id}:{event['channel']}"
        # Nothing stored yet: its first question (a redelivery racing this one may have joined
        # the thread already, but stores nothing before its answer ends).
        first = not await self._core.conversations.history(f"{thread}:{event['thread_ts']}", 1)
        await self._status(set_status(THINKING, loading_messages=list(LOADING_MESSAGES)))
        try:
            if first and question:
                await self._title(set_title(title(question)))
            await self._reply(event, context, client, True)
        except Exception as error:  # the status must not be left thinking: say what happened
            if isinstance(error, BotError):
                log.warning("assistant thread answer failed: %s", error.detail)
                notice = error.user_message
            else:
                log.exception("assistant thread answer crashed")
                notice = ANSWER_CRASHED
            await self._tell(client, event, notice)
        finally:
            await self._status(set_status(CLEARED))

    async def _status(self, call: Awaitable[Any]) -> None:
        try:
            await call_slack("assistant.threads.setStatus", call)
        except BotError as error:  # the answer matters more than its status
            log.warning("could not set the assistant thread's status: %s", error.detail)

    async def _title(self, call: Awaitable[Any]) -> None:
        try:
            await call_slack("assistant.threads.setTitle", call)
        except BotError as error:
            log.warning("could not title the assistant thread: %s", error.detail)

    async def _tell(self, client: AsyncWebClient, event: dict[str, Any], notice: str) -> None:
        try:
            await call_slack(
                "chat.postMessage",
                client.chat_postMessage(
                    channel=str(event["channel"]), thread_ts=str(event["thread_ts"]), text=notice
                ),
            )
        except BotError as error:
            log.warning("could not tell the asker the answer failed: %s", error.detail)


def title(question: str) -> str:
    """A thread's title: the question's first line, cut at a word within TITLE_CHARS."""
    line = question.strip().splitlines()[0].strip()
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1].rsplit(" ", 1)[0]
    return f"{cut}…"
