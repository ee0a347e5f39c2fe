"""The web chat's first screen over HTTP, with the real core over real documents: the page has
the places for the suggested questions and the no-key banner, and GET /api/suggestions lists
questions made from the documents' headings, follows the documents, and is guarded like every
API call. (tests/web/test_web_browser.py shows them in a browser, a click asking.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.web.routes import add_web_routes
from bot.core import Core
from bot.settings import Settings
from tests.web.conftest import api_headers, open_page


@pytest.fixture
async def core(fake_settings: Settings) -> AsyncIterator[Core]:
    docs = fake_settings.knowledge_dir
    docs.mkdir(parents=True)
    (docs / "relay.md").write_text(
        "# Installing the relay\n\nRun the installer.\n\n## Overview\n\nWhat it is.\n\n"
        "## Rotating the relay's keys\n\nOnce a month.\n"
    )
    (docs / "vacation.md").write_text("# Vacation policy\n\nEmployees get 25 vacation days.\n")
    opened = await Core.open(fake_settings)
    await opened.knowledge.refresh()
    yield opened
    await opened.close()


@pytest.fixture
async def client(core: Core) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_web_routes(app, core.settings, core)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def suggested(client: TestClient[Any, Any]) -> list[str]:
    response = await client.get("/api/suggestions", headers=api_headers(client))
    assert response.status == 200
    body = await response.json()
    return list(body["questions"])


async def test_the_first_screen_lists_questions_made_from_the_documents(
    client: TestClient[Any, Any], core: Core
) -> None:
    await open_page(client)
    page = await (await client.get("/")).text()

    assert await suggested(client) == [
        "How do I install the relay?",
        "What should I know about vacation policy?",
        "How do I rotate the relay's keys?",
    ]
    assert 'id="suggestion-list"' in page and 'id="key-banner"' in page

    (core.settings.knowledge_dir / "vacation.md").unlink()
    (core.settings.knowledge_dir / "expenses.md").write_text("# Expense reports\n\nMonthly.\n")
    await core.knowledge.refresh()
    assert await suggested(client) == [
        "What should I know about expense reports?",
        "How do I install the relay?",
        "How do I rotate the relay's keys?",
    ]


async def test_the_suggestions_are_guarded_like_the_rest_of_the_api(
    client: TestClient[Any, Any],
) -> None:
    await open_page(client)

    refused = await client.get("/api/suggestions")  # no X-Answerbot header: another site

    assert refused.status == 403
