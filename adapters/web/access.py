"""Who may use the web chat: the Host names it answers to, the login it asks for, and the proxies
whose forwarding headers it believes.

A page on an attacker's DNS name that resolves to 127.0.0.1 is same-origin with itself (DNS
rebinding), so the Origin check alone lets it in: the chat answers only to loopback names, HOST and
WEB_ALLOWED_HOSTS. Where it can be reached from elsewhere (HOST not loopback, WEB_ALLOWED_HOSTS or
TRUSTED_PROXIES set) or WEB_PASSWORD is set, it asks for a login first, as Jupyter does: the token
in the link printed at start, or the password, traded for an HttpOnly, SameSite=Strict cookie.
Only the chat's own routes are guarded: Slack's events and /healthz arrive under a public name.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import logging
import secrets
import time
from collections.abc import Set
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# HOST values that bind every interface: recognised here, never bound.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104
LOGIN_PATH = "/login"
LOGIN_COOKIE = "answerbot_login"
LOGIN_MAX_AGE_SECONDS = 7 * 24 * 3600  # logins are kept in memory: a restart also ends them
_TOKEN_BYTES = 32
_LOGIN_BYTES = 32
_MAX_HOST_SHOWN = 100  # characters of a refused Host name quoted back
FORWARDED_SCHEMES = frozenset({"http", "https"})
LOGIN_FIRST = "Log in first: reload the page."
BAD_LINK = "That login link is wrong or from an earlier start: use the one printed last."
BAD_LOGIN = "That password is wrong."
# The login page posts its own form (the chat's policy forbids forms) and runs no script at all.
LOGIN_PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def host_name(authority: str) -> str:
    """The name in a Host header, lowercased and unbracketed: "[::1]:3000" -> "::1"."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.partition(":")[0]


def _shown(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    # A server bound to "::" sees IPv4 peers as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(name: str) -> bool:
    address = _ip(name)
    return name == "localhost" or (address is not None and address.is_loopback)


def _last(header: str | None) -> str:
    # Each proxy appends; the last value is the one our trusted proxy wrote.
    return (header or "").rpartition(",")[2].strip()


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def same_origin(request: web.Request) -> bool:
    """The Origin header names this server as the browser reached it (its Host)."""
    origin = request.headers.get("Origin")
    return origin is not None and urlsplit(origin).netloc.lower() == request.host.lower()


@dataclass
class Access:
    """The chat's door, built once from the settings by `add_access`."""

    host: str  # HOST, unbracketed
    port: int
    allowed: frozenset[str]  # Host names answered to, beside loopback IP addresses
    proxies: tuple[Network, ...]
    guarded: Set[web.AbstractResource]  # the page, its socket, its API: behind the login
    served: Set[web.AbstractResource]  # the above and the static assets: Host checked
    password: bool = False  # the login is WEB_PASSWORD, not the printed token
    token: str | None = None  # printed at start; None with a password or no login
    secret: bytes | None = None  # sha256 of what a login must match; None: no login
    logins: dict[bytes, float] = field(default_factory=dict)  # cookie sha256 -> expiry

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        guarded: Set[web.AbstractResource],
        served: Set[web.AbstractResource],
    ) -> Access:
        host = settings.host.strip().strip("[]").lower()
        names = {*LOOPBACK_NAMES, *settings.web_allowed_hosts}
        if host not in WILDCARD_HOSTS:
            names.add(host)
        access = cls(
            host=host,
            port=settings.port,
            allowed=frozenset(names),
            proxies=tuple(ipaddress.ip_network(p) for p in settings.trusted_proxies),
            guarded=guarded,
            served=served | guarded,
        )
        reachable_from_elsewhere = not is_loopback(host) or bool(
            settings.web_allowed_hosts or settings.trusted_proxies
        )
        if settings.web_password is not None:
            access.password = True
            access.secret = _digest(settings.web_password.get_secret_value())
        elif reachable_from_elsewhere:
            access.token = secrets.token_urlsafe(_TOKEN_BYTES)
            access.secret = _digest(access.token)
        return access

    # -- what the request is, seen through a trusted proxy -------------------------------------

    def through_proxy(self, request: web.Request) -> web.Request:
        """The request as the browser made it, when a trusted proxy says so; else unchanged."""
        peer = _ip(request.remote)
        if peer is None or not any(peer in network for network in self.proxies):
            return request
        scheme = _last(request.headers.get("X-Forwarded-Proto")).lower()
        return request.clone(
            scheme=scheme if scheme in FORWARDED_SCHEMES else request.scheme,
            host=_last(request.headers.get("X-Forwarded-Host")) or request.host,
            remote=_last(request.headers.get("X-Forwarded-For")) or str(peer),
        )

    def host_allowed(self, name: str) -> bool:
        # A loopback address cannot be a rebinding name: the page's own origin is that address.
        return name in self.allowed or (_ip(name) is not None and is_loopback(name))

    def misdirected(self, name: str) -> web.Response:
        accepted = ", ".join(_shown(n) for n in sorted(self.allowed))
        text = (
            f"This web chat answers only to the host names {accepted}, not to "
            f"{name[:_MAX_HOST_SHOWN]!r}. To reach it under another name (behind a proxy, or at "
            "this machine's address), add that name to WEB_ALLOWED_HOSTS.\n"
        )
        return web.Response(status=421, text=text)

    # -- logging in ----------------------------------------------------------------------------

    def logged_in(self, request: web.Request) -> bool:
        if self.secret is None:
            return True
        cookie = request.cookies.get(LOGIN_COOKIE)
        # A dict lookup on a hash of 256 random bits: its timing tells nothing useful.
        expiry = self.logins.get(_digest(cookie)) if cookie else None
        return expiry is not None and expiry > time.monotonic()

    def matches(self, given: str) -> bool:
        assert self.secret is not None
        return hmac.compare_digest(_digest(given), self.secret)

    def log_in(self, response: web.StreamResponse, request: web.Request) -> None:
        now = time.monotonic()
        for stale in [key for key, expiry in self.logins.items() if expiry <= now]:
            del self.logins[stale]
        cookie = secrets.token_urlsafe(_LOGIN_BYTES)
        self.logins[_digest(cookie)] = now + LOGIN_MAX_AGE_SECONDS
        response.set_cookie(
            LOGIN_COOKIE,
            cookie,
            max_age=LOGIN_MAX_AGE_SECONDS,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        log.info("web chat: a browser at %s logged in", request.remote)

    def refused(self, request: web.Request) -> None:
        kind = "password" if self.password else "login token"
        log.warning("web chat: refused a wrong %s from %s", kind, request.remote)

    def login_page(self, status: int, error: str | None = None) -> web.Response:
        if self.password:
            hint, label = "Enter the web chat's password (WEB_PASSWORD).", "Password"
        else:
            hint = (
                "Open the link printed where the bot was started (it ends in ?token=…), "
                "or paste its token here."
            )
            label = "Token"
        alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = LOGIN_HTML.format(hint=hint, label=label, alert=alert, action=LOGIN_PATH)
        response = web.Response(status=status, text=body, content_type="text/html")
        response.headers["Content-Security-Policy"] = LOGIN_PAGE_POLICY
        # With no-referrer, the browser would post the form with "Origin: null", refused below.
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def start_message(self) -> str:
        """What `bot run` prints: the chat's address, with its login link when there is one."""
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        url = f"http://{_shown(host)}:{self.port}/"
        if self.token is not None:
            return (
                f"answerbot web chat: {url}?token={self.token}\n"
                "(this link logs a browser in; a new one is printed at every start)"
            )
        if self.password:
            return f"answerbot web chat: {url} (log in with WEB_PASSWORD)"
        return f"answerbot web chat: {url}"


LOGIN_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Log in · Answer bot</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <main class="chat">
    <section class="welcome">
      <h1>Log in to the answer bot</h1>
      <p>{hint}</p>
      <form method="post" action="{action}">
        <label for="secret">{label}</label>
        <input id="secret" name="secret" type="password" autocomplete="current-password"
               required autofocus>
        <button type="submit" class="button button-primary">Log in</button>
      </form>
      {alert}
    </section>
  </main>
</body>
</html>
"""
# Answers a login link: the cookie is set, then the page moves on to the chat by itself. A
# redirect would not do: after a link followed from another site, the browser would withhold
# the SameSite=Strict cookie from the redirected request, and the chat would ask again.
LOGGED_IN_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta http-equiv="refresh" content="0; url=/">
  <title>Logged in · Answer bot</title>
</head>
<body><p>Logged in. <a href="/">Open the chat</a>.</p></body>
</html>
"""

WEB_ACCESS = web.AppKey("web_access", Access)


def add_access(
    app: web.Application,
    settings: Settings,
    guarded: Set[web.AbstractResource],
    served: Set[web.AbstractResource],
) -> Access:
    """Guard the chat's resources: `served` by Host name, `guarded` by Host name and login."""
    access = Access.from_settings(settings, guarded, served)
    app[WEB_ACCESS] = access
    if access.secret is not None:
        resource = app.router.add_post(LOGIN_PATH, login).resource
        assert resource is not None  # a route added to a router always has its resource
        access.served = access.served | {resource}
    app.middlewares.append(door)
    return access


@web.middleware
async def door(request: web.Request, handler: Handler) -> web.StreamResponse:
    access = request.app[WEB_ACCESS]
    resource = request.match_info.route.resource
    if resource is None or resource not in access.served:
        return await handler(request)
    request = access.through_proxy(request)
    name = host_name(request.host)
    if not access.host_allowed(name):
        return access.misdirected(name)
    if access.token is not None and request.path == "/" and "token" in request.query:
        return _login_by_link(access, request)
    if resource in access.guarded and not access.logged_in(request):
        if request.path == "/":
            return access.login_page(401)
        return web.json_response({"error": LOGIN_FIRST}, status=401)
    return await handler(request)


def _login_by_link(access: Access, request: web.Request) -> web.StreamResponse:
    if not access.matches(request.query["token"]):
        access.refused(request)
        return access.login_page(403, BAD_LINK)
    response = web.Response(text=LOGGED_IN_HTML, content_type="text/html")
    access.log_in(response, request)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """The login form's POST: the password, or the token pasted by hand."""
    access = request.app[WEB_ACCESS]
    if "Origin" in request.headers and not same_origin(request):
        return web.Response(status=403, text="Cross-origin logins are refused.\n")
    given = (await request.post()).get("secret")
    if not isinstance(given, str) or not access.matches(given):
        access.refused(request)
        return access.login_page(403, BAD_LOGIN if access.password else BAD_LINK)
    response = web.Response(status=303, headers={"Location": "/"})
    access.log_in(response, request)
    return response
