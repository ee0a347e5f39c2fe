"""The operator's endpoints on the one HTTP server: GET /healthz (the process is alive), GET
/readyz (it can serve: the core's and the adapters' checks) and GET /metrics (Prometheus).

They sit next to Slack's public events endpoint, so they show nothing about who uses the bot:
readiness names its checks and says what is wrong in fixed words, metrics carry platform names
and outcomes only. An operator who would rather not expose them blocks the three paths at the
proxy or firewall, or turns /metrics off with METRICS=false. The web chat's login does not guard
them (a load balancer's probe has no cookie): `adapters.web.access` guards only the chat's own
routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core

HEALTHZ, READYZ, METRICS = "/healthz", "/readyz", "/metrics"


def add_operations_routes(app: web.Application, core: Core, adapters: list[str]) -> None:
    """/healthz naming the `adapters` served, /readyz, and /metrics unless METRICS is off."""

    async def healthz(request: web.Request) -> web.Response:
        # Cheap on purpose: a liveness probe that waited on the database would restart a bot
        # whose database is down, which cures nothing.
        return web.json_response({"status": "ok", "adapters": adapters})

    async def readyz(request: web.Request) -> web.Response:
        checks = await core.ready()
        failing = [check.name for check in checks if not check.ok]
        body = {
            "status": "failing" if failing else "ready",
            "failing": failing,
            "checks": {check.name: check.detail for check in checks},
        }
        return web.json_response(body, status=503 if failing else 200)

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = core.metrics.exposition()
        # aiohttp takes the charset apart from the type ("text/plain; version=0.0.4; ...").
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_get(HEALTHZ, healthz)
    app.router.add_get(READYZ, readyz)
    if core.settings.metrics:
        app.router.add_get(METRICS, metrics)
