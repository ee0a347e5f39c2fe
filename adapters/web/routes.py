"""The local web chat: the page, its static assets, the answer socket, and the JSON API's routes.

`add_web_routes` adds them to the one aiohttp application `bot run` serves. Who is asking is a
browser session (`sessions.py`: a cookie, of which the database sees a hash; thread keys
`web:<session hash>:<conversation>`). Each question on the socket becomes one
`core.conversations.reply` call; `api.py` answers the rest (history, feedback, the key, the first
screen's suggested questions). Every API call and the socket refuse cross-origin requests;
`access.py` decides who may reach them at all (Host names, the login).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from adapters.web.access import LOGIN_PATH, add_access, same_origin
from adapters.web.api import (
    clear_key,
    conversation_history,
    feedback,
    key_status,
    set_key,
    suggestions,
)
from adapters.web.sessions import (
    CONVERSATION_ID,
    SESSION_BYTES,
    SESSION_COOKIE,
    SESSION_MAX_AGE_SECONDS,
    WEB_CHAT,
    WORKSPACE,
    WebChat,
    api_error,
    session_cookie,
    session_ref,
    thread_key,
)
from adapters.web.surface import SocketChannel, WebSurface
from bot.errors import ANSWER_CRASHED, BotError
from bot.settings import Settings

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_QUESTION_CHARS = 8_000
MAX_SOCKET_MESSAGE_BYTES = 64 * 1024
HEARTBEAT_SECONDS = 30.0

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
    app.router.add_get("/api/suggestions", suggestions)
    guarded = frozenset(app.router.resources()) - before
    static = app.router.add_static("/static/", STATIC_DIR, append_version=False)
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_finish_answers)
    add_access(app, settings, guarded=guarded, served=frozenset({static}))


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
    if session_cookie(request) is None:
        response.set_cookie(
            SESSION_COOKIE,
            secrets.token_urlsafe(SESSION_BYTES),
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
        return api_error(403, "Cross-origin sockets are refused.")
    cookie = session_cookie(request)
    if cookie is None:
        return api_error(401, "Your browser session has expired; reload the page.")
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
