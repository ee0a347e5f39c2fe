"""The web chat's JSON API: a conversation's stored history (shown on reload), 👍/👎 on an
answer, the settings form's key (`core.keys` for the `web:local` workspace), and the first
screen's suggested questions. Every call is guarded by `sessions.api` (header, origin, session).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from adapters.web.markdown import render_answer
from adapters.web.sessions import (
    CONVERSATION_ID,
    WORKSPACE,
    WebChat,
    api,
    api_error,
    thread_key,
)
from bot.errors import BotError, InputError, InvalidApiKey
from bot.store import StoredMessage

log = logging.getLogger(__name__)

HISTORY_LIMIT = 500  # messages shown on reload
INVALID_KEY_MESSAGE = "The model endpoint rejected that key; check it and try again."
FAILED_ANSWER_NOTE = "This answer failed before it finished."


@api
async def conversation_history(request: web.Request, chat: WebChat, session: str) -> web.Response:
    conversation = request.match_info["conversation"]
    if not CONVERSATION_ID.fullmatch(conversation):
        return api_error(404, "No such conversation.")
    key = thread_key(session, conversation)
    messages = await chat.core.conversations.history(key, limit=HISTORY_LIMIT)
    return web.json_response({"messages": _history(messages), "answering": key in chat.answering})


def _history(messages: Sequence[StoredMessage]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "user":
            entries.append({"role": "user", "text": message.text})
            continue
        rendered = render_answer(message.text, message.sources)
        entries.append(
            {
                "role": "assistant",
                "answer_id": message.id,
                "html": rendered.html,
                "sources": rendered.sources,
                "status": message.status,
                "note": FAILED_ANSWER_NOTE if message.status == "failed" else None,
                "feedback": message.feedback,
            }
        )
    return entries


@api
async def feedback(request: web.Request, chat: WebChat, session: str) -> web.Response:
    """👍/👎 on an answer, only in the caller's own conversation."""
    body = await _json_body(request)
    conversation = body.get("conversation")
    answer_id = body.get("answer_id")
    value = body.get("value")
    if (
        not isinstance(conversation, str)
        or not CONVERSATION_ID.fullmatch(conversation)
        or not isinstance(answer_id, int)
        or value not in (1, -1)
    ):
        return api_error(400, "Feedback needs a conversation, an answer and +1 or -1.")
    messages = await chat.core.conversations.history(thread_key(session, conversation))
    if not any(m.id == answer_id and m.role == "assistant" for m in messages):
        return api_error(404, "No such answer in this conversation.")
    await chat.core.conversations.feedback(
        answer_id, int(value), user=f"web:{session}", workspace=WORKSPACE
    )
    return web.json_response({"ok": True})


@api
async def key_status(request: web.Request, chat: WebChat, session: str) -> web.Response:
    return web.json_response(await _key_state(chat))


async def _key_state(chat: WebChat) -> dict[str, Any]:
    status = await chat.core.keys.status(WORKSPACE)
    # server_key: the operator's key writes the answers here (FALLBACK_KEY_SCOPE may keep it
    # for embeddings or other workspaces), never any part of that key.
    return {"last4": status.last4, "server_key": status.source == "operator"}


@api
async def set_key(request: web.Request, chat: WebChat, session: str) -> web.Response:
    body = await _json_body(request)
    key = body.get("key")
    if not isinstance(key, str):
        return api_error(400, "Paste an API key first.")
    try:
        await chat.core.keys.set(WORKSPACE, key, by=f"web:{session}")
    except InvalidApiKey:
        return api_error(400, INVALID_KEY_MESSAGE)
    except InputError as error:
        return api_error(400, error.user_message)
    except BotError as error:
        log.warning("web chat: setting the key failed: %s", error.detail)
        return api_error(502, error.user_message)
    return web.json_response(await _key_state(chat))


@api
async def clear_key(request: web.Request, chat: WebChat, session: str) -> web.Response:
    await chat.core.keys.clear(WORKSPACE)
    return web.json_response(await _key_state(chat))


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@api
async def suggestions(request: web.Request, chat: WebChat, session: str) -> web.Response:
    """Questions the first screen offers, made from the knowledge's headings."""
    return web.json_response({"questions": await chat.core.suggested_questions()})
