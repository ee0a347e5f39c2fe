"""Who is asking the web chat: the browser session (an HttpOnly, SameSite=Strict cookie holding
a random id, of which the database only ever sees a hash), the thread keys made from it, the
per-application state (`WebChat`), and the JSON API's guard: a custom header and a same-origin
Origin, so another site can't drive the API from a visitor's browser.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.web.access import same_origin
from bot.background import Background
from bot.settings import Settings

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core

WORKSPACE = "web:local"
SESSION_COOKIE = "answerbot_session"
SESSION_MAX_AGE_SECONDS = 30 * 24 * 3600  # a returning operator finds their chats for a month
SESSION_BYTES = 24
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32}")  # token_urlsafe(24): 32 URL-safe characters
_SESSION_REF_CHARS = 16  # of the sha256 hex digest: what thread keys and authors carry
CSRF_HEADER = "X-Answerbot"  # a custom header forces a CORS preflight we never answer
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class WebChat:
    """Per-application state: the core, open sockets, answers in flight."""

    settings: Settings
    core: Core
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    answers: Background = field(default_factory=lambda: Background("web chat"))
    answering: set[str] = field(default_factory=set)  # thread keys with an answer in flight


WEB_CHAT = web.AppKey("web_chat", WebChat)


def session_cookie(request: web.Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE)
    return value if value and SESSION_ID.fullmatch(value) else None


def session_ref(cookie: str) -> str:
    """What the database holds for a session: a hash, so a leaked database is no cookie."""
    return hashlib.sha256(cookie.encode()).hexdigest()[:_SESSION_REF_CHARS]


def thread_key(session: str, conversation: str) -> str:
    return f"web:{session}:{conversation}"


def api_refusal(request: web.Request) -> web.Response | None:
    """Refuse cross-site use of the API: custom header required, and a same-origin Origin."""
    if request.headers.get(CSRF_HEADER) != "1":
        return api_error(403, f"Missing the {CSRF_HEADER} header.")
    if "Origin" in request.headers and not same_origin(request):
        return api_error(403, "Cross-origin requests are refused.")
    return None


def api_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


Handler = Callable[[web.Request, WebChat, str], Awaitable[web.StreamResponse]]


def api(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap an API handler with the origin check and the caller's session."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        refusal = api_refusal(request)
        if refusal is not None:
            return refusal
        cookie = session_cookie(request)
        if cookie is None:
            return api_error(401, "Your browser session has expired; reload the page.")
        return await handler(request, request.app[WEB_CHAT], session_ref(cookie))

    return wrapped
