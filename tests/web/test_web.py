"""The web chat adapter over HTTP and its socket: sessions, streaming frames, history, the key API,
origin checks, and the markdown it lets into the page."""

from __future__ import annotations

import asyncio
import json
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adapters.web.api import FAILED_ANSWER_NOTE
from adapters.web.markdown import render_answer, render_markdown
from adapters.web.routes import MAX_QUESTION_CHARS
from adapters.web.sessions import CSRF_HEADER, SESSION_COOKIE, WORKSPACE, session_ref
from adapters.web.surface import SocketChannel, WebSurface
from bot.citations import Source
from bot.streaming.editor import MARKER
from tests.web.conftest import WAIT, FakeCore, api_headers, frames_until_final, open_page, origin

# -- the page and the session ------------------------------------------------------------------


async def test_page_sets_a_strict_httponly_session_cookie_and_a_locked_down_policy(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert "<textarea" in await response.text()
    cookie_header = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie_header
    assert "SameSite=Strict" in cookie_header
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # A second visit keeps the same session.
    again = await client.get("/")
    assert "Set-Cookie" not in again.headers


async def test_static_assets_are_served_by_the_bot(client: TestClient[Any, Any]) -> None:
    for name, kind in (("app.js", "javascript"), ("style.css", "css"), ("favicon.svg", "svg")):
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        assert kind in response.headers["Content-Type"]
    page = await (await client.get("/")).text()
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    assert (await client.get("/static/../routes.py")).status == 404


# -- asking over the socket --------------------------------------------------------------------


async def test_a_question_streams_into_one_message_that_ends_with_its_sources(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    cookie = await open_page(client)
    async with client.ws_connect("/ws", headers={"Origin": origin(client)}) as ws:
        await ws.send_json({"type": "ask", "conversation": "c1", "text": "  How do I install?  "})
        frames = await frames_until_final(ws)

    assert [f["type"] for f in frames] == ["post", "edit", "edit", "edit", "edit"]
    assert len({f["id"] for f in frames}) == 1  # grown in place, not re-posted
    assert {f["conversation"] for f in frames} == {"c1"}
    growing = [f["html"] for f in frames[1:-1]]
    assert "Hello" in growing[0] and "from" not in growing[0]
    assert "<strong>bot</strong>" in growing[-1]
    final = frames[-1]
    assert final["answer_id"] is not None
    assert final["sources"] == ["[1] guide.md › Setup"]
    assert "Sources" not in final["html"]  # listed separately, under the answer

    (call,) = core.conversations.calls
    assert call["thread_key"] == f"web:{session_ref(cookie)}:c1"
    assert call["workspace"] == WORKSPACE
    assert call["question"] == "How do I install?"
    assert cookie not in json.dumps(call)  # the database only ever sees a hash of the cookie


async def test_reload_shows_the_thread_and_other_sessions_do_not_see_it(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    await open_page(client)
    async with client.ws_connect("/ws", headers={"Origin": origin(client)}) as ws:
        await ws.send_json({"type": "ask", "conversation": "c1", "text": "First?"})
        await frames_until_final(ws)

    response = await client.get("/api/conversations/c1", headers=api_headers(client))
    assert response.status == 200
    history = await response.json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    assert history["messages"][0]["text"] == "First?"
    answer = history["messages"][1]
    assert "<strong>bot</strong>" in answer["html"]
    assert answer["sources"] == ["[1] guide.md › Setup"]
    assert history["answering"] is False

    # A new chat in the same session is empty; so is the same id in another browser.
    empty = await client.get("/api/conversations/c2", headers=api_headers(client))
    assert (await empty.json())["messages"] == []
    client.session.cookie_jar.clear()
    await open_page(client)
    stranger = await client.get("/api/conversations/c1", headers=api_headers(client))
    assert (await stranger.json())["messages"] == []


async def test_a_page_closed_mid_answer_still_gets_its_answer_stored(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    core.conversations.gate = asyncio.Event()
    await open_page(client)
    async with client.ws_connect("/ws", headers={"Origin": origin(client)}) as ws:
        await ws.send_json({"type": "ask", "conversation": "c1", "text": "Long one?"})
        while json.loads((await asyncio.wait_for(ws.receive(), WAIT)).data)["type"] != "edit":
            pass
    # The page is gone; the answer goes on and is stored.
    during = await client.get("/api/conversations/c1", headers=api_headers(client))
    assert (await during.json())["answering"] is True
    core.conversations.gate.set()
    for _ in range(200):
        history = await (
            await client.get("/api/conversations/c1", headers=api_headers(client))
        ).json()
        if not history["answering"]:
            break
        await asyncio.sleep(0.05)
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    assert "bot" in history["messages"][1]["html"]


async def test_shutting_down_lets_an_answer_in_flight_finish_and_be_stored(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    core.conversations.gate = asyncio.Event()
    cookie = await open_page(client)
    async with client.ws_connect("/ws", headers={"Origin": origin(client)}) as ws:
        await ws.send_json({"type": "ask", "conversation": "c1", "text": "Still there?"})
        while json.loads((await asyncio.wait_for(ws.receive(), WAIT)).data)["type"] != "edit":
            pass
        asyncio.get_running_loop().call_later(0.2, core.conversations.gate.set)
        await client.close()  # the server shuts down with the answer still being written
    stored = await core.store.thread_messages(f"web:{session_ref(cookie)}:c1")
    assert [m.role for m in stored] == ["user", "assistant"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"type": "ask", "conversation": "c1", "text": "   "}, "Type a question first."),
        (
            {"type": "ask", "conversation": "c1", "text": "x" * (MAX_QUESTION_CHARS + 1)},
            "too long",
        ),
        ({"type": "ask", "conversation": "../etc", "text": "hi"}, "start a new chat"),
        ({"type": "nonsense"}, "unexpected"),
    ],
)
async def test_bad_input_gets_a_clear_message_and_no_answer(
    client: TestClient[Any, Any], core: FakeCore, frame: dict[str, Any], message: str
) -> None:
    await open_page(client)
    async with client.ws_connect("/ws", headers={"Origin": origin(client)}) as ws:
        await ws.send_json(frame)
        reply = json.loads((await asyncio.wait_for(ws.receive(), WAIT)).data)
        assert reply["type"] == "error"
        assert message in reply["message"]
        await ws.send_str("not json")
        reply = json.loads((await asyncio.wait_for(ws.receive(), WAIT)).data)
        assert reply["type"] == "error"
    assert core.conversations.calls == []


async def test_a_second_question_while_answering_waits_its_turn(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    core.conversations.gate = asyncio.Event()
    await open_page(client)
    async with client.ws_connect("/ws", headers={"Origin": origin(client)}) as ws:
        await ws.send_json({"type": "ask", "conversation": "c1", "text": "One?"})
        await ws.send_json({"type": "ask", "conversation": "c1", "text": "Two?"})
        seen: list[dict[str, Any]] = []
        while not any(f["type"] == "error" for f in seen):
            seen.append(json.loads((await asyncio.wait_for(ws.receive(), WAIT)).data))
        assert "Wait for the current answer" in seen[-1]["message"]
        core.conversations.gate.set()
        await frames_until_final(ws)
    assert [c["question"] for c in core.conversations.calls] == ["One?"]


# -- refusing other origins --------------------------------------------------------------------


async def test_sockets_and_the_api_refuse_other_origins(client: TestClient[Any, Any]) -> None:
    await open_page(client)
    evil = {"Origin": "http://127.0.0.1:1"}  # same site, other origin: SameSite does not help
    with pytest.raises(Exception, match="403"):
        await client.ws_connect("/ws", headers=evil)
    with pytest.raises(Exception, match="403"):
        await client.ws_connect("/ws")  # no Origin at all
    refused = await client.post(
        "/api/key", json={"key": "sk-good-1234"}, headers={**evil, CSRF_HEADER: "1"}
    )
    assert refused.status == 403
    no_header = await client.post("/api/key", json={"key": "sk-good-1234"})
    assert no_header.status == 403
    status = await (await client.get("/api/key", headers=api_headers(client))).json()
    assert status["last4"] is None


async def test_the_api_and_socket_need_a_session(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/conversations/c1", headers=api_headers(client))
    assert response.status == 401
    assert "reload" in (await response.json())["error"]
    with pytest.raises(Exception, match="401"):
        await client.ws_connect("/ws", headers={"Origin": origin(client)})


# -- the key form ------------------------------------------------------------------------------


async def test_setting_a_key_shows_only_its_last_four_characters(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    await open_page(client)
    secret = "sk-good-very-secret-wxyz"
    response = await client.post("/api/key", json={"key": secret}, headers=api_headers(client))
    assert response.status == 200
    body = await response.text()
    assert secret not in body
    assert json.loads(body)["last4"] == "wxyz"
    status = await client.get("/api/key", headers=api_headers(client))
    assert await status.json() == {"last4": "wxyz", "server_key": False}
    assert await core.store.get_api_key(WORKSPACE) == secret

    removed = await client.delete("/api/key", headers=api_headers(client))
    assert (await removed.json())["last4"] is None
    assert await core.store.get_api_key(WORKSPACE) is None


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("sk-wrong-1234", 400, "rejected that key"),
        ("   ", 400, "Paste the whole API key"),
        ("sk-down-1234", 502, "unavailable"),
    ],
)
async def test_a_refused_key_explains_why_and_is_not_stored(
    client: TestClient[Any, Any], core: FakeCore, key: str, status: int, message: str
) -> None:
    await open_page(client)
    response = await client.post("/api/key", json={"key": key}, headers=api_headers(client))
    assert response.status == status
    body = await response.text()
    assert message in json.loads(body)["error"]
    assert key.strip() == "" or key not in body
    assert await core.store.get_api_key(WORKSPACE) is None


# -- feedback ----------------------------------------------------------------------------------


async def test_feedback_lands_only_on_answers_in_the_callers_conversation(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    await open_page(client)
    async with client.ws_connect("/ws", headers={"Origin": origin(client)}) as ws:
        await ws.send_json({"type": "ask", "conversation": "c1", "text": "Hi?"})
        answer_id = (await frames_until_final(ws))[-1]["answer_id"]
    vote = {"conversation": "c1", "answer_id": answer_id, "value": -1}
    assert (
        await client.post("/api/feedback", json=vote, headers=api_headers(client))
    ).status == 200
    stored = await core.store.get_message(answer_id)
    assert stored is not None and stored.feedback == -1

    client.session.cookie_jar.clear()
    await open_page(client)
    other = {**vote, "value": 1}
    refused = await client.post("/api/feedback", json=other, headers=api_headers(client))
    assert refused.status == 404
    stored = await core.store.get_message(answer_id)
    assert stored is not None and stored.feedback == -1


# -- what markdown may put in the page ---------------------------------------------------------

INJECTIONS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[data](data:text/html,<script>alert(1)</script>)",
    "![x](javascript:alert(1))",
    '<iframe src="http://evil.example"></iframe>',
    "<svg onload=alert(1)>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
]


SAFE_TAGS = frozenset(
    {"p", "a", "strong", "em", "code", "pre", "ul", "ol", "li", "table", "thead", "tbody", "tr"}
    | {"th", "td", "del", "s", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "br"}
)


class _Elements(HTMLParser):
    """Every element and attribute the browser would build from an HTML string."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("text", INJECTIONS)
def test_html_and_scripts_in_markdown_come_out_inert(text: str) -> None:
    for tag, attrs in elements(render_markdown(text)):
        assert tag in SAFE_TAGS
        assert not any(name.startswith("on") for name in attrs)
        href = (attrs.get("href") or "").lower()
        assert not href or href.startswith(("http:", "https:", "mailto:"))


def test_markdown_keeps_code_lists_links_and_tables() -> None:
    html = render_markdown(
        "1. one\n2. two\n\n```py\nprint('<b>')\n```\n\n[docs](https://example.org/x)\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    assert "<ol>" in html
    assert '<code class="language-py">print(&#x27;&lt;b&gt;&#x27;)' in html or "&lt;b&gt;" in html
    assert '<a href="https://example.org/x" rel="noopener noreferrer nofollow"' in html
    assert "<table>" in html
    assert 'href="mailto:a@b.example"' in render_markdown("[m](mailto:a@b.example)")


def test_images_become_links_so_answers_load_nothing() -> None:
    html = render_markdown("![chart](https://tracker.example/pixel.png)")
    assert "<img" not in html
    assert 'href="https://tracker.example/pixel.png"' in html


def test_sources_arrive_as_data_and_are_listed_as_text() -> None:
    sources = [Source(1, "a.md", "<b>Heading</b>", "x"), Source(2, "b.md", None, "y")]
    surface = WebSurface(SocketChannel(web.WebSocketResponse()), "c1")
    assert surface.footer(sources) == ""  # nothing is written into the answer's text
    rendered = render_answer("Body [1].", sources)
    assert rendered.sources == ["[1] a.md › <b>Heading</b>", "[2] b.md"]  # text, shown as text
    assert "Sources" not in rendered.html
    assert render_answer("No sources here.").sources == []


# -- the surface and stored states -------------------------------------------------------------


def test_the_page_draws_its_own_caret_instead_of_the_editors_marker() -> None:
    surface = WebSurface(SocketChannel(web.WebSocketResponse()), "c1")
    assert surface.render(f"Half an answer {MARKER}") == "Half an answer"
    assert surface.render("A finished answer.") == "A finished answer."
    assert surface.measure("ab") == 2
    assert surface.edit_budget.key != surface.post_budget.key


async def test_a_failed_answer_reloads_marked_as_failed_without_feedback_buttons(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    cookie = await open_page(client)
    await core.store.record_exchange(
        thread_key=f"web:{session_ref(cookie)}:c1",
        workspace=WORKSPACE,
        question="Will this work?",
        answer="It started to",
        sources=[],
        status="failed",
    )
    history = await (await client.get("/api/conversations/c1", headers=api_headers(client))).json()
    answer = history["messages"][1]
    assert answer["status"] == "failed"
    assert answer["note"] == FAILED_ANSWER_NOTE


async def test_a_forged_session_cookie_is_replaced_by_a_fresh_one(
    client: TestClient[Any, Any],
) -> None:
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: "short"})
    response = await client.get("/")
    assert SESSION_COOKIE in response.cookies
    assert response.cookies[SESSION_COOKIE].value != "short"
