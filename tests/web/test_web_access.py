"""Who may use the web chat, at the wire: the Host names it answers to (DNS rebinding), the login a
server asks for (the printed token link, WEB_PASSWORD), and forwarding headers believed only from
TRUSTED_PROXIES; Slack's events and /healthz are left alone."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSServerHandshakeError, web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from adapters.web.access import LOGIN_COOKIE, LOGIN_PATH, WEB_ACCESS
from adapters.web.routes import add_web_routes
from adapters.web.sessions import SESSION_COOKIE, WORKSPACE
from bot.settings import Settings
from tests.web.conftest import FakeCore, api_headers, frames_until_final, open_page, origin

REBINDING_NAME = "rebind.attacker.example"  # resolves to 127.0.0.1 once the page has loaded
PASSWORD = "correct horse battery staple"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a HOST setting under test; these servers bind loopback

FakeCoreStub: Any = object()  # for apps whose tests never reach the core
Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
async def serve(core: FakeCore, tmp_path: Path) -> AsyncIterator[Serve]:
    """Serve the chat on 127.0.0.1 with these settings (a real Settings, so its checks run)."""
    clients: list[Client] = []

    async def start(**overrides: Any) -> Client:
        settings = Settings(_env_file=None, data_dir=tmp_path, **overrides)  # type: ignore[call-arg]
        app = web.Application()
        add_web_routes(app, settings, core)
        server = TestServer(app, host="127.0.0.1")
        # As `bot run` serves it: no access log, whose request lines would carry ?token=.
        await server.start_server(access_log=None)
        client: Client = TestClient(server)
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def as_host(client: Client, name: str) -> dict[str, str]:
    """Headers of a browser that reached this server as `name`: its Host and its Origin."""
    host = f"{name}:{client.port}"
    return {"Host": host, "Origin": f"http://{host}"}


def token_of(client: Client) -> str:
    """The token in the line `bot run` prints."""
    found = re.search(r"\?token=([A-Za-z0-9_-]+)", client.app[WEB_ACCESS].start_message())
    assert found is not None
    return found.group(1)


async def assert_chat_answers(client: Client, headers: dict[str, str] | None = None) -> None:
    """The page loads, a question over the socket gets its answer, the API answers."""
    page = await client.get("/", headers=headers)
    assert page.status == 200
    assert "<textarea" in await page.text()
    socket_headers = headers or {"Origin": origin(client)}
    async with client.ws_connect("/ws", headers=socket_headers) as ws:
        await ws.send_json({"type": "ask", "conversation": "c1", "text": "How do I install?"})
        frames = await frames_until_final(ws)
    assert frames[-1]["final"] and frames[-1]["sources"] == ["[1] guide.md › Setup"]
    api = {**api_headers(client), **(headers or {})}
    assert (await client.get("/api/key", headers=api)).status == 200


def set_cookie(response: Any, name: str) -> str:
    """The raw Set-Cookie header for `name` (its flags are what the tests read)."""
    (header,) = [h for h in response.headers.getall("Set-Cookie", []) if h.startswith(name + "=")]
    return str(header)


# -- Host names (DNS rebinding) ----------------------------------------------------------------


async def test_a_page_on_a_rebinding_name_gets_neither_the_chat_nor_the_key(
    client: Client, core: FakeCore
) -> None:
    await open_page(client)  # even with a session cookie in hand
    rebound = as_host(client, REBINDING_NAME)

    page = await client.get("/", headers=rebound)
    assert page.status == 421
    text = await page.text()
    assert "localhost" in text and "WEB_ALLOWED_HOSTS" in text
    assert SESSION_COOKIE not in page.cookies
    assert (await client.get("/static/app.js", headers=rebound)).status == 421
    stolen = await client.post(
        "/api/key",
        json={"key": "sk-good-attackers-1234"},
        headers={**api_headers(client), **rebound},
    )
    assert stolen.status == 421
    status = await client.get("/api/key", headers={**api_headers(client), **rebound})
    assert status.status == 421
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers=rebound)
    assert refused.value.status == 421
    assert await core.store.get_api_key(WORKSPACE) is None
    assert core.conversations.calls == []


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", "LocalHost"])
async def test_loopback_names_are_served_without_a_login(client: Client, name: str) -> None:
    await assert_chat_answers(client, as_host(client, name))


async def test_the_configured_host_and_allowed_names_are_served(serve: Serve) -> None:
    client = await serve(host="bot.lan", web_allowed_hosts="Chat.Example.com, [::1]")
    for name in ("bot.lan", "chat.example.com", "localhost"):
        # Not misdirected: asked to log in (a non-loopback HOST asks for one).
        assert (await client.get("/", headers=as_host(client, name))).status == 401, name
    other = await client.get("/", headers=as_host(client, "other.example"))
    assert other.status == 421
    assert "bot.lan" in await other.text() and "chat.example.com" in await other.text()

    logged_in = await client.get("/", params={"token": token_of(client)})
    assert logged_in.status == 200
    await assert_chat_answers(client, as_host(client, "chat.example.com"))


async def test_slack_events_and_healthz_keep_the_deployments_public_name(serve: Serve) -> None:
    seen: list[tuple[str, str]] = []

    async def slack_events(request: web.Request) -> web.Response:  # stands in for bolt's route
        seen.append((request.host, request.scheme))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/slack/events", slack_events)
    # Stands in for adapters/operations.py's (tests/test_operations.py runs the real one).
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))
    settings = Settings(_env_file=None, host=ALL_INTERFACES, trusted_proxies="127.0.0.1")  # type: ignore[call-arg]
    add_web_routes(app, settings, FakeCoreStub)
    public = {"Host": "bot.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "x.y"}
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.post("/slack/events", data=b"{}", headers=public)).status == 200
        assert (await client.get("/healthz", headers=public)).status == 200
        assert (await client.get("/", headers=public)).status == 421  # the chat is not
    assert seen == [("bot.example.com", "http")]  # and its request was not rewritten


# -- the login on a server ---------------------------------------------------------------------


async def test_a_server_asks_for_the_login_link_and_refuses_a_wrong_token(
    serve: Serve, core: FakeCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await serve(host=ALL_INTERFACES)
    token = token_of(client)
    guess = "a-guessed-token-that-is-wrong"

    page = await client.get("/")
    assert page.status == 401
    body = await page.text()
    assert "?token=" in body and '<form method="post" action="/login">' in body
    assert SESSION_COOKIE not in page.cookies and LOGIN_COOKIE not in page.cookies
    api = await client.get("/api/key", headers=api_headers(client))
    assert api.status == 401
    assert "Log in" in (await api.json())["error"]
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": origin(client)})
    assert refused.value.status == 401

    wrong = await client.get("/", params={"token": guess})
    assert wrong.status == 403
    assert "wrong" in await wrong.text()
    assert LOGIN_COOKIE not in wrong.cookies
    pasted = await client.post(
        LOGIN_PATH, data={"secret": guess}, headers=as_host(client, "localhost")
    )
    assert pasted.status == 403
    assert LOGIN_COOKIE not in pasted.cookies

    for response in (page, api, wrong, pasted):
        text = await response.text()
        assert token not in text and guess not in text
    assert token not in caplog.text and guess not in caplog.text
    assert "refused a wrong login token" in caplog.text
    assert core.conversations.calls == []


async def test_the_printed_link_logs_a_browser_in_and_the_chat_works(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await serve(host=ALL_INTERFACES, port=3000)
    printed = client.app[WEB_ACCESS].start_message()
    assert printed.startswith("answerbot web chat: http://127.0.0.1:3000/?token=")
    token = token_of(client)

    landing = await client.get("/", params={"token": token})
    assert landing.status == 200
    assert 'http-equiv="refresh" content="0; url=/"' in await landing.text()
    cookie = set_cookie(landing, LOGIN_COOKIE)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert token not in cookie
    await assert_chat_answers(client)
    assert token not in caplog.text


async def test_a_token_pasted_into_the_form_logs_in_and_other_sites_cannot_post_it(
    serve: Serve,
) -> None:
    client = await serve(host=ALL_INTERFACES)
    token = token_of(client)
    forged = await client.post(
        LOGIN_PATH, data={"secret": token}, headers={"Origin": "http://evil.example"}
    )
    assert forged.status == 403
    assert LOGIN_COOKIE not in forged.cookies
    sandboxed = await client.post(LOGIN_PATH, data={"secret": token}, headers={"Origin": "null"})
    assert sandboxed.status == 403

    response = await client.post(
        LOGIN_PATH,
        data={"secret": token},
        headers={"Origin": origin(client)},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/"
    assert "SameSite=Strict" in set_cookie(response, LOGIN_COOKIE)
    await assert_chat_answers(client)


async def test_a_forged_login_cookie_is_not_a_login(serve: Serve) -> None:
    client = await serve(host=ALL_INTERFACES)
    client.session.cookie_jar.update_cookies({LOGIN_COOKIE: "A" * 43})
    assert (await client.get("/")).status == 401


async def test_web_password_guards_even_a_loopback_chat(
    serve: Serve, core: FakeCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await serve(web_password=PASSWORD)
    printed = client.app[WEB_ACCESS].start_message()
    assert "WEB_PASSWORD" in printed and "token" not in printed
    page = await client.get("/")
    assert page.status == 401
    assert "password" in (await page.text()).lower()
    # The password is no link token: it never travels in a URL.
    assert (await client.get("/", params={"token": PASSWORD})).status == 401

    wrong = await client.post(LOGIN_PATH, data={"secret": "not the password"})
    assert wrong.status == 403
    assert "password is wrong" in await wrong.text()
    right = await client.post(LOGIN_PATH, data={"secret": PASSWORD}, allow_redirects=False)
    assert right.status == 303
    assert "HttpOnly" in set_cookie(right, LOGIN_COOKIE)
    await assert_chat_answers(client)
    assert PASSWORD not in caplog.text
    assert "refused a wrong password" in caplog.text
    assert len(core.conversations.calls) == 1


# -- behind a proxy ----------------------------------------------------------------------------

FORWARDED = {
    "Host": "127.0.0.1:3000",  # what a proxy configured with the bot's address sends
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "chat.example.com",
    "Origin": "https://chat.example.com",
}


async def test_https_forwarded_by_a_trusted_proxy_makes_both_cookies_secure(
    serve: Serve,
) -> None:
    client = await serve(trusted_proxies="127.0.0.1", web_allowed_hosts="chat.example.com")
    landing = await client.get("/", params={"token": token_of(client)}, headers=FORWARDED)
    assert landing.status == 200
    login = set_cookie(landing, LOGIN_COOKIE)
    assert "Secure" in login
    # The browser now holds a Secure cookie for https://chat.example.com; send it as it would.
    value = login.split(";")[0].split("=", 1)[1]
    page = await client.get("/", headers={**FORWARDED, "Cookie": f"{LOGIN_COOKIE}={value}"})
    assert page.status == 200
    assert "Secure" in set_cookie(page, SESSION_COOKIE)
    # The Origin check compares with the name the browser used, as forwarded.
    cookies = f"{LOGIN_COOKIE}={value}; {SESSION_COOKIE}={page.cookies[SESSION_COOKIE].value}"
    api_call = {**api_headers(client), **FORWARDED, "Cookie": cookies}
    api = await client.get("/api/key", headers=api_call)
    assert api.status == 200
    # A forwarded name must still be allowed.
    rebound = await client.get("/", headers={**FORWARDED, "X-Forwarded-Host": REBINDING_NAME})
    assert rebound.status == 421


async def test_forwarding_headers_from_anyone_else_are_ignored(serve: Serve) -> None:
    client = await serve(trusted_proxies="10.0.0.7", web_allowed_hosts="chat.example.com")
    spoofed = {**as_host(client, "localhost"), "X-Forwarded-Proto": "https"}
    landing = await client.get("/", params={"token": token_of(client)}, headers=spoofed)
    assert landing.status == 200
    assert "Secure" not in set_cookie(landing, LOGIN_COOKIE)
    # Nor can a forwarded name smuggle in a refused one, or unlock an allowed one.
    smuggled = {**as_host(client, REBINDING_NAME), "X-Forwarded-Host": "localhost"}
    assert (await client.get("/", headers=smuggled)).status == 421


# -- settings and the printed line -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_PASSWORD", "short", "at least 8 characters"),
        ("TRUSTED_PROXIES", "10.0.0.1, proxy.lan", "not an IP address or network"),
        ("WEB_ALLOWED_HOSTS", "https://chat.example.com", "not a host name"),
        ("WEB_ALLOWED_HOSTS", "chat.example.com:443", "no port"),
    ],
)
def test_bad_access_settings_are_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message) as refused:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert name.lower() in str(refused.value)


def test_access_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_ALLOWED_HOSTS", "Chat.Example.com, [::1],10.1.2.3")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.7, 172.16.0.0/12")
    monkeypatch.setenv("WEB_PASSWORD", PASSWORD)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.web_allowed_hosts == ["chat.example.com", "::1", "10.1.2.3"]
    assert settings.trusted_proxies == ["10.0.0.7/32", "172.16.0.0/12"]
    assert PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    ("host", "printed"),
    [
        ("127.0.0.1", "answerbot web chat: http://127.0.0.1:3000/"),
        ("::1", "answerbot web chat: http://[::1]:3000/"),
        ("localhost", "answerbot web chat: http://localhost:3000/"),
    ],
)
def test_a_loopback_chat_prints_its_plain_address(host: str, printed: str) -> None:
    app = web.Application()
    add_web_routes(app, Settings(_env_file=None, host=host), FakeCoreStub)  # type: ignore[call-arg]
    assert app[WEB_ACCESS].start_message() == printed


def test_each_start_prints_a_new_token() -> None:
    tokens = set()
    for _ in range(2):
        app = web.Application()
        add_web_routes(app, Settings(_env_file=None, host="10.0.0.2"), FakeCoreStub)  # type: ignore[call-arg]
        message = app[WEB_ACCESS].start_message()
        assert message.startswith("answerbot web chat: http://10.0.0.2:3000/?token=")
        tokens.add(message)
    assert len(tokens) == 2
