"""The local web chat: the page, its static assets, the answer socket and a small JSON API.

`add_web_routes` adds them to the one aiohttp application `bot run` serves. A browser session is
an HttpOnly, SameSite=Strict cookie holding a random id; the database only ever sees a hash of it
(thread keys `web:<session hash>:<conversation>`). Each question on the socket becomes one
`core.conversations.reply` call; the settings form drives `core.keys` for the `web:local`
workspace. Every API call and the socket refuse cross-origin requests; `access.py` decides who
may reach them at all (Host names, the login).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from adapters.web.access import LOGIN_PATH, add_access, same_origin
from adapters.web.markdown import render_answer
from adapters.web.surface import SocketChannel, WebSurface
from bot.background import Background
from bot.errors import ANSWER_CRASHED, BotError, InputError, InvalidApiKey
from bot.settings import Settings
from bot.store import StoredMessage

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core

log = logging.getLogger(__name__)

WORKSPACE = "web:local"
STATIC_DIR = Path(__file__).parent / "static"
SESSION_COOKIE = "answerbot_session"
SESSION_MAX_AGE_SECONDS = 30 * 24 * 3600  # a returning operator finds their chats for a month
_SESSION_BYTES = 24
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32}")  # token_urlsafe(24): 32 URL-safe characters
_SESSION_REF_CHARS = 16  # of the sha256 hex digest: what thread keys and authors carry
CSRF_HEADER = "X-Answerbot"  # a custom header forces a CORS preflight we never answer
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_QUESTION_CHARS = 8_000
MAX_SOCKET_MESSAGE_BYTES = 64 * 1024
HEARTBEAT_SECONDS = 30.0
HISTORY_LIMIT = 500  # messages shown on reload
INVALID_KEY_MESSAGE = "The model endpoint rejected that key; check it and try again."
FAILED_ANSWER_NOTE = "This answer failed before it finished."

SECURITY_HEADERS = {
    # The page runs only its own script; answers are sanitized HTML, and this is the backstop.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@dataclass
class WebChat:
    """Per-application state: the core, open sockets, answers in flight."""

    settings: Settings
    core: Core
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    answers: Background = field(default_factory=lambda: Background("web chat"))
    answering: set[str] = field(default_factory=set)  # thread keys with an answer in flight


WEB_CHAT = web.AppKey("web_chat", WebChat)


def add_web_routes(app: web.Application, settings: Settings, core: Core) -> None:
    """Serve the chat page at /, its assets under /static/, the socket at /ws, and /api/."""
    app[WEB_CHAT] = WebChat(settings=settings, core=core)
    before = set(app.router.resources())
    app.router.add_get("/", page)
    app.router.add_get("/ws", chat_socket)
    app.router.add_get("/api/conversations/{conversation}", conversation_history)
    app.router.add_post("/api/feedback", feedback)
    app.router.add_get("/api/key", key_status)
    app.router.add_post("/api/key", set_key)
    app.router.add_delete("/api/key", clear_key)
    guarded = frozenset(app.router.resources()) - before
    static = app.router.add_static("/static/", STATIC_DIR, append_version=False)
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_finish_answers)
    add_access(app, settings, guarded=guarded, served=frozenset({static}))


# -- sessions and origins -----------------------------------------------------------------------


def _session_cookie(request: web.Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE)
    return value if value and SESSION_ID.fullmatch(value) else None


def session_ref(cookie: str) -> str:
    """What the database holds for a session: a hash, so a leaked database is no cookie."""
    return hashlib.sha256(cookie.encode()).hexdigest()[:_SESSION_REF_CHARS]


def thread_key(session: str, conversation: str) -> str:
    return f"web:{session}:{conversation}"


def _api_refusal(request: web.Request) -> web.Response | None:
    """Refuse cross-site use of the API: custom header required, and a same-origin Origin."""
    if request.headers.get(CSRF_HEADER) != "1":
        return _error(403, f"Missing the {CSRF_HEADER} header.")
    if "Origin" in request.headers and not same_origin(request):
        return _error(403, "Cross-origin requests are refused.")
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


Handler = Callable[[web.Request, WebChat, str], Awaitable[web.StreamResponse]]


def _api(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap an API handler with the origin check and the caller's session."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        refusal = _api_refusal(request)
        if refusal is not None:
            return refusal
        cookie = _session_cookie(request)
        if cookie is None:
            return _error(401, "Your browser session has expired; reload the page.")
        return await handler(request, request.app[WEB_CHAT], session_ref(cookie))

    return wrapped


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not _is_web_path(request.path):
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _is_web_path(path: str) -> bool:
    return path in ("/", LOGIN_PATH) or path.startswith(("/static/", "/api/", "/ws"))


# -- the page -----------------------------------------------------------------------------------


async def page(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(STATIC_DIR / "index.html")
    if _session_cookie(request) is None:
        response.set_cookie(
            SESSION_COOKIE,
            secrets.token_urlsafe(_SESSION_BYTES),
            max_age=SESSION_MAX_AGE_SECONDS,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
    return response


# -- the answer socket --------------------------------------------------------------------------


async def chat_socket(request: web.Request) -> web.StreamResponse:
    """Questions in, answer frames out: {"type": "ask", "conversation": id, "text": question}."""
    chat = request.app[WEB_CHAT]
    if not same_origin(request):
        return _error(403, "Cross-origin sockets are refused.")
    cookie = _session_cookie(request)
    if cookie is None:
        return _error(401, "Your browser session has expired; reload the page.")
    session = session_ref(cookie)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_SOCKET_MESSAGE_BYTES)
    await ws.prepare(request)
    chat.sockets.add(ws)
    channel = SocketChannel(ws)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await _on_frame(chat, channel, session, message.data)
            elif message.type == WSMsgType.ERROR:
                log.info("web chat socket error: %s", ws.exception())
    finally:
        chat.sockets.discard(ws)
    return ws


async def _on_frame(chat: WebChat, channel: SocketChannel, session: str, data: str) -> None:
    try:
        frame = json.loads(data)
    except ValueError:
        frame = None
    if not isinstance(frame, dict) or frame.get("type") != "ask":
        await channel.send({"type": "error", "message": "The page sent something unexpected."})
        return
    conversation = frame.get("conversation")
    text = frame.get("text")
    if not isinstance(conversation, str) or not CONVERSATION_ID.fullmatch(conversation):
        await channel.send({"type": "error", "message": "Unknown conversation; start a new chat."})
        return
    problem = _question_problem(text)
    if problem is not None:
        await channel.send({"type": "error", "conversation": conversation, "message": problem})
        return
    assert isinstance(text, str)
    key = thread_key(session, conversation)
    if key in chat.answering:
        await channel.send(
            {
                "type": "error",
                "conversation": conversation,
                "message": "Wait for the current answer to finish.",
            }
        )
        return
    chat.answering.add(key)
    # The answer runs apart from the socket's read loop so a closed page cannot cut it short.
    chat.answers.spawn(
        _answer(chat, channel, session, conversation, key, text.strip()), name=f"answer {key}"
    )


def _question_problem(text: object) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return "Type a question first."
    if len(text) > MAX_QUESTION_CHARS:
        return f"That question is too long; keep it under {MAX_QUESTION_CHARS:,} characters."
    return None


async def _answer(
    chat: WebChat,
    channel: SocketChannel,
    session: str,
    conversation: str,
    key: str,
    question: str,
) -> None:
    try:
        await chat.core.conversations.reply(
            surface=WebSurface(channel, conversation),
            thread_key=key,
            workspace=WORKSPACE,
            question=question,
            author=f"web:{session}",
        )
    except BotError as error:
        log.warning("web chat answer failed: %s", error.detail)
        await channel.send(
            {"type": "error", "conversation": conversation, "message": error.user_message}
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("web chat answer crashed")
        await channel.send(
            {
                "type": "error",
                "conversation": conversation,
                "message": ANSWER_CRASHED,
            }
        )
    finally:
        chat.answering.discard(key)


async def _close_sockets(app: web.Application) -> None:
    sockets = list(app[WEB_CHAT].sockets)
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down") for ws in sockets)
    )


async def _finish_answers(app: web.Application) -> None:
    chat = app[WEB_CHAT]
    await chat.answers.drain(chat.settings.shutdown_grace_seconds)


# -- the JSON API -------------------------------------------------------------------------------


@_api
async def conversation_history(request: web.Request, chat: WebChat, session: str) -> web.Response:
    conversation = request.match_info["conversation"]
    if not CONVERSATION_ID.fullmatch(conversation):
        return _error(404, "No such conversation.")
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


@_api
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
        return _error(400, "Feedback needs a conversation, an answer and +1 or -1.")
    messages = await chat.core.conversations.history(thread_key(session, conversation))
    if not any(m.id == answer_id and m.role == "assistant" for m in messages):
        return _error(404, "No such answer in this conversation.")
    await chat.core.conversations.feedback(
        answer_id, int(value), user=f"web:{session}", workspace=WORKSPACE
    )
    return web.json_response({"ok": True})


@_api
async def key_status(request: web.Request, chat: WebChat, session: str) -> web.Response:
    return web.json_response(await _key_state(chat))


async def _key_state(chat: WebChat) -> dict[str, Any]:
    status = await chat.core.keys.status(WORKSPACE)
    # server_key: the operator's key writes the answers here (FALLBACK_KEY_SCOPE may keep it
    # for embeddings or other workspaces), never any part of that key.
    return {"last4": status.last4, "server_key": status.source == "operator"}


@_api
async def set_key(request: web.Request, chat: WebChat, session: str) -> web.Response:
    body = await _json_body(request)
    key = body.get("key")
    if not isinstance(key, str):
        return _error(400, "Paste an API key first.")
    try:
        await chat.core.keys.set(WORKSPACE, key, by=f"web:{session}")
    except InvalidApiKey:
        return _error(400, INVALID_KEY_MESSAGE)
    except InputError as error:
        return _error(400, error.user_message)
    except BotError as error:
        log.warning("web chat: setting the key failed: %s", error.detail)
        return _error(502, error.user_message)
    return web.json_response(await _key_state(chat))


@_api
async def clear_key(request: web.Request, chat: WebChat, session: str) -> web.Response:
    await chat.core.keys.clear(WORKSPACE)
    return web.json_response(await _key_state(chat))


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
