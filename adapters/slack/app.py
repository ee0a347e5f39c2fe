"""The Slack adapter's entry points: build the slack-bolt app, serve it over HTTP or Socket Mode.

One bot token (SLACK_BOT_TOKEN) or OAuth installs for many workspaces (SLACK_CLIENT_ID and
SLACK_CLIENT_SECRET, installations kept in the bot's database). Over HTTP, events, commands and
interactivity arrive at POST /slack/events on the bot's one aiohttp server; with SLACK_APP_TOKEN
they arrive over Socket Mode instead. `adapters/slack/listeners.py` says what each one becomes.
A body bolt can't read gets 400 (bolt would fail with a 500); requests from workspaces not in
SLACK_ALLOWED_TEAMS, and with one bot token from any other workspace, are dropped before bolt
authorizes them (`adapters/slack/home_team.py`), and installs from them refused (`allowed.py`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.allowed import AllowedTeams, install_failed
from adapters.slack.formats import SlackFormats
from adapters.slack.home_team import HomeTeam
from adapters.slack.install import SlackInstallationStore, SlackStateStore
from adapters.slack.listeners import Listeners
from adapters.slack.reopen import reopener
from bot.background import Background
from bot.errors import ConfigError
from bot.settings import Settings

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core
    from bot.readiness import Readiness

log = logging.getLogger(__name__)

# Bot scopes the manifest asks for; the OAuth install requests exactly these.
BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "commands",
    "users:read",
)
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
EVENTS_PATH = "/slack/events"


class _QuietDebug(logging.Filter):
    """Drops DEBUG records: slack-bolt and slack_sdk log whole payloads there, and a /setkey
    payload holds an API key, an oauth.v2.access response a bot token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def sdk_logger() -> logging.Logger:
    """The logger slack-bolt and slack_sdk get (bolt copies its filters to the loggers it makes)."""
    logger = logging.getLogger("adapters.slack.sdk")
    if not any(isinstance(f, _QuietDebug) for f in logger.filters):
        logger.addFilter(_QuietDebug())
    return logger


@dataclass(frozen=True)
class _Served:
    tasks: Background  # drained on shutdown by add_slack_routes / run_socket_mode
    verifier: SignatureVerifier | None  # None only for Socket Mode without a signing secret
    session: aiohttp.ClientSession  # the Web API client's connections, closed after the drain
    grace: float  # SHUTDOWN_GRACE_SECONDS: how long answers in flight get to finish

    async def close(self) -> None:
        await self.tasks.drain(self.grace)
        await self.session.close()


_SERVED: weakref.WeakKeyDictionary[AsyncApp, _Served] = weakref.WeakKeyDictionary()


def background(slack_app: AsyncApp) -> Background:
    """The answers and commands `slack_app` has in flight."""
    return _SERVED[slack_app].tasks


def build_slack_app(settings: Settings, core: Core) -> AsyncApp:
    """The bolt app with every listener registered; serve it with `add_slack_routes` (HTTP)
    or `run_socket_mode`."""
    _check(settings)
    logger = sdk_logger()
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    # One session for every Web API call: without it slack_sdk opens (and, on Slack, TLS
    # handshakes) a new connection per chat.update. The bench measured that as the bot's
    # largest Slack cost after the model stream.
    session = aiohttp.ClientSession()
    # Only connection errors are retried: a retried 429 would hide from the editor's budget.
    client = AsyncWebClient(
        token=None if settings.slack_client_id else token,
        base_url=settings.slack_api_url,
        logger=logger,
        retry_handlers=[AsyncConnectionErrorRetryHandler()],
        session=session,
    )
    signing_secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    )
    oauth_settings = None
    installations = None
    allowed = AllowedTeams(settings.slack_allowed_teams)
    if settings.slack_client_id and settings.slack_client_secret:
        installations = SlackInstallationStore(core.store, logger, allowed)
        oauth_settings = AsyncOAuthSettings(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),
            scopes=list(BOT_SCOPES),
            user_scopes=[],
            installation_store=installations,
            installation_store_bot_only=True,
            state_store=SlackStateStore(core.store, logger),
            install_path=INSTALL_PATH,
            redirect_uri_path=REDIRECT_PATH,
            logger=logger,
            # An install from a workspace not in SLACK_ALLOWED_TEAMS gets a page saying so.
            callback_options=AsyncCallbackOptions(success=_install_done, failure=install_failed),
        )
    verifies_requests = bool(signing_secret) or settings.slack_app_token is None
    # Requests from workspaces not allowed are dropped; with one token, from any other but its own.
    home = HomeTeam(client if oauth_settings is None else None, allowed)
    app = AsyncApp(
        name="answerbot",
        client=client,
        signing_secret=signing_secret,
        oauth_settings=oauth_settings,
        installation_store_bot_only=True if oauth_settings else None,
        logger=logger,
        process_before_response=True,
        # Socket Mode needs no signing secret (Slack is the other end of the socket).
        request_verification_enabled=verifies_requests,
        before_authorize=home.guard,
    )
    tasks = Background("Slack")
    verifier = SignatureVerifier(signing_secret) if verifies_requests else None
    _SERVED[app] = _Served(tasks, verifier, session, settings.shutdown_grace_seconds)
    formats = SlackFormats()  # what each workspace's Slack refused of the newer forms
    Listeners(core, tasks, installations, formats).register(app)
    # Answers a dead process left in Slack threads are ended once this process can reach them.
    core.journal.mend_with("slack", reopener(settings, session, installations, formats, logger))
    return app


async def _install_done(args: AsyncSuccessArgs) -> BoltResponse:
    return await args.default.success(args)


def _check(settings: Settings) -> None:
    # Caught at start: otherwise bolt would refuse every request (or fail on the first one).
    if settings.slack_client_id and settings.slack_client_secret is None:
        raise ConfigError("SLACK_CLIENT_ID is set without SLACK_CLIENT_SECRET.")
    if not (settings.slack_bot_token or settings.slack_client_id):
        raise ConfigError("Slack needs SLACK_BOT_TOKEN, or SLACK_CLIENT_ID and SECRET.")
    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        raise ConfigError(
            "Slack over HTTP needs SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)."
        )


# -- serving --------------------------------------------------------------------------------------


def add_slack_routes(web_app: web.Application, slack_app: AsyncApp) -> None:
    """POST /slack/events (events, commands, interactivity), plus the OAuth install routes when
    OAuth is configured; answers in flight are drained when the server shuts down.

    With Socket Mode and OAuth, call this too: installs still arrive over HTTP."""

    verifier = _SERVED[slack_app].verifier
    if verifier is not None:
        web_app.router.add_post(EVENTS_PATH, _events(slack_app, verifier))
    else:
        # Unsigned requests would be trusted: with Socket Mode and no signing secret, only
        # the install routes are served over HTTP.
        log.info("no SLACK_SIGNING_SECRET: POST %s is not served (Socket Mode)", EVENTS_PATH)
    flow = slack_app.oauth_flow
    if flow is not None:

        async def install(request: web.Request) -> web.StreamResponse:
            return await to_aiohttp_response(
                await flow.handle_installation(await to_bolt_request(request))
            )

        async def redirect(request: web.Request) -> web.StreamResponse:
            return await to_aiohttp_response(
                await flow.handle_callback(await to_bolt_request(request))
            )

        web_app.router.add_get(flow.install_path, install)
        web_app.router.add_get(flow.redirect_uri_path, redirect)

    async def drain(_: web.Application) -> None:
        await _SERVED[slack_app].close()

    web_app.on_shutdown.append(drain)


def _events(
    slack_app: AsyncApp, verifier: SignatureVerifier
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """POST /slack/events: bolt's aiohttp adapter, with a body bolt can't parse answered 400."""

    async def events(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        text = _readable(raw, request.content_type)
        if text is None:
            return _unreadable(raw, request, verifier)
        bolt_request = AsyncBoltRequest(
            body=text,
            query=request.query_string,
            headers=request.headers,  # type: ignore[arg-type]
        )
        return await to_aiohttp_response(await slack_app.async_dispatch(bolt_request))

    return events


def _readable(raw: bytes, content_type: str) -> str | None:
    """The body as text when bolt can read it (a JSON object, or a form whose `payload` is
    one); None otherwise. bolt parses the body before it checks the signature, and a body it
    can't parse would be a 500."""
    try:
        text = raw.decode("utf-8")
        return text if isinstance(parse_body(text, content_type), dict) else None
    except ValueError:  # not UTF-8, or not JSON
        return None


def _unreadable(raw: bytes, request: web.Request, verifier: SignatureVerifier) -> web.Response:
    # Only Slack learns that its body was malformed; anyone else gets what bolt would say.
    try:
        signed = verifier.is_valid_request(raw, dict(request.headers))
    except UnicodeDecodeError:  # slack_sdk checks text only; Slack sends nothing but UTF-8
        signed = True
    if not signed:
        return web.Response(status=401, text="invalid request")
    log.warning("a request to %s is not a UTF-8 JSON object: 400", EVENTS_PATH)
    return web.Response(status=400, text="malformed request body")


async def run_socket_mode(
    settings: Settings, slack_app: AsyncApp, readiness: Readiness | None = None
) -> None:
    """Receive events over Socket Mode until cancelled (needs SLACK_APP_TOKEN); `readiness`
    is told whether the socket is connected (HTTP mode has no connection to check)."""
    if settings.slack_app_token is None:
        raise ValueError("Socket Mode needs SLACK_APP_TOKEN")
    handler = AsyncSocketModeHandler(
        slack_app, settings.slack_app_token.get_secret_value(), logger=sdk_logger()
    )
    if readiness is not None:

        async def connected() -> str | None:
            if await handler.client.is_connected():
                return None
            return "the Socket Mode connection is down"

        readiness.add("slack", connected)
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("Slack connected over Socket Mode")
        await asyncio.Event().wait()  # serve until cancelled
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
        await _SERVED[slack_app].close()
