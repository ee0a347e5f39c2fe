"""The Slack workspaces the app serves (SLACK_ALLOWED_TEAMS): an install from any other is refused
with a page saying so, and its events and commands are dropped before bolt authorizes them.

A public Slack app can be installed by anyone who finds its install link, and every workspace
that installs it would be answered from the operator's documents (and, under FALLBACK_KEY_SCOPE,
with the operator's key). Team ids (T…) name one workspace, org ids (E…) every workspace of an
Enterprise Grid org; no entry means every workspace, as before the setting existed.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable

from slack_bolt.error import BoltError
from slack_bolt.oauth.async_callback_options import AsyncFailureArgs
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

# A slash command's ack is shown to the person who ran it; other requests' acks are not shown.
NOT_ALLOWED = "This bot isn't available in this Slack workspace; ask the person who runs it."
INSTALL_REFUSED_TITLE = "This workspace can't install the app"
INSTALL_REFUSED = (
    "The app's operator has not allowed this Slack workspace ({team}), so it was not installed "
    "and nothing was kept. If you run the app, add the workspace's id to SLACK_ALLOWED_TEAMS."
)


class TeamNotAllowed(BoltError):
    """Raised by the installation store: bolt turns it into the install's failure page."""

    def __init__(self, team: str) -> None:
        super().__init__(f"Slack workspace {team} is not in SLACK_ALLOWED_TEAMS")
        self.team = team


class AllowedTeams:
    """SLACK_ALLOWED_TEAMS, asked about one request's or one install's workspace."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = frozenset(entries)

    def allows(self, enterprise_id: str | None, team_id: str | None) -> bool:
        if not self._entries:
            return True
        return bool({enterprise_id, team_id} - {None} & self._entries)

    def check_install(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Raises TeamNotAllowed for a workspace (or org) not on the list, and logs it."""
        if not self.allows(enterprise_id, team_id):
            team = str(team_id or enterprise_id)
            log.warning("Slack install refused for %s: not in SLACK_ALLOWED_TEAMS", team)
            raise TeamNotAllowed(team)


async def install_failed(args: AsyncFailureArgs) -> BoltResponse:
    """bolt's failure page, or ours when the workspace is not allowed (403, not bolt's 500)."""
    if isinstance(args.error, TeamNotAllowed):
        body = (
            f"<html><head><title>{INSTALL_REFUSED_TITLE}</title></head><body>"
            f"<h2>{INSTALL_REFUSED_TITLE}</h2>"
            f"<p>{html.escape(INSTALL_REFUSED.format(team=args.error.team))}</p></body></html>"
        )
        return BoltResponse(
            status=403, body=body, headers={"Content-Type": "text/html; charset=utf-8"}
        )
    return await args.default.failure(args)
