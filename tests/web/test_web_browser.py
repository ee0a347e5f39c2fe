"""The web chat in a real headless browser (Debian's chromium driven by playwright): typing,
streaming, sources, reload, a new chat, injections rendered inert, the key form, and logging in.

Needs /usr/bin/chromium and the playwright package: `scripts/install-browser.sh` installs both.
Without them these tests fail (they never skip), naming that script.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from adapters.web.access import WEB_ACCESS
from adapters.web.routes import add_web_routes
from adapters.web.sessions import SESSION_COOKIE, WORKSPACE, session_ref, thread_key
from bot.core import Core
from bot.resources import bundled
from bot.settings import Settings
from bot.store import StoredMessage
from tests.fakes.openai import FAKE_KEY, FakeOpenAI

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = "run scripts/install-browser.sh (as root) to install chromium and playwright"
# Flags for root on a closed network: no sandbox (root), nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # generous: a wait that runs out is a failure, never a pass
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = os.environ.get("WEB_SCREENSHOTS")  # a directory: save desktop and phone shots

try:
    from playwright.async_api import Browser, Page, async_playwright, expect

    expect.set_options(timeout=WAIT_MS)
except ImportError:  # pragma: no cover - reported by the fixture below
    async_playwright = None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if async_playwright is None:
        pytest.fail(f"the playwright package is missing: {INSTALL_HINT}")
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: {INSTALL_HINT}")
    async with async_playwright() as playwright:
        # playwright gives every launch a fresh temporary profile (--user-data-dir).
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


GUIDE = """# Installing

Install the answer bot with pip: run `pip install answerbot`, then start it with `bot run`.
"""
# A document that tries to run script in the page through its heading and its text.
EVIL = """# Refunds <img src=x onerror="window.__pwned=1">

Refunds take five days. <script>window.__pwned=1</script>
<iframe src="javascript:window.__pwned=1"></iframe> [refund form](javascript:window.__pwned=1)
"""
INSTALL_QUESTION = "How do I install the answer bot?"


@pytest.fixture
async def core(fake_settings: Settings) -> AsyncIterator[Core]:
    """The real core against the fake model endpoint, over a small knowledge folder."""
    docs = fake_settings.knowledge_dir
    docs.mkdir(parents=True)
    (docs / "install.md").write_text(GUIDE)
    (docs / "refunds.md").write_text(EVIL)
    opened = await Core.open(fake_settings)
    await opened.knowledge.refresh()
    yield opened
    await opened.close()


@pytest.fixture
async def keyed(core: Core) -> Core:
    """The web workspace has a key the fake endpoint accepts."""
    await core.store.set_api_key(WORKSPACE, FAKE_KEY)
    return core


async def start_chat(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve `app` on a free loopback port, as `bot run` does (no access log)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    return runner, server.sockets[0].getsockname()[1]


@pytest.fixture
async def base_url(core: Core) -> AsyncIterator[str]:
    app = web.Application()
    add_web_routes(app, core.settings, core)
    runner, port = await start_chat(app)
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


@pytest.fixture
async def page(browser: Browser, base_url: str) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)
    opened = await context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # Refused API calls (a wrong key: 400) are answers the page shows, not page errors.
    opened.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    await opened.goto(base_url)
    await expect(opened.locator("body")).to_have_attribute("data-connected", "true")
    yield opened
    await context.close()
    assert errors == [], "the page logged errors"


async def ask(page: Page, question: str) -> None:
    box = page.get_by_label("Your question")
    await box.fill(question)
    await box.press("Enter")


async def stored_thread(page: Page, core: Core) -> list[StoredMessage]:
    """The stored messages of the conversation the page shows, found as the adapter keys it."""
    (cookie,) = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
    conversation = await page.evaluate("localStorage.getItem('answerbot.conversation')")
    return await core.store.thread_messages(thread_key(session_ref(cookie["value"]), conversation))


def answers(page: Page) -> Any:
    return page.locator("article.message.assistant")


# -- asking ------------------------------------------------------------------------------------

ANSWER_CHUNKS = (
    "Install it",
    " with **pip**:",
    "\n\n```sh\npip install answerbot\n```\n\n",
    "Then start it with `bot run` [1].",
)


async def test_a_typed_question_streams_in_with_its_sources(
    page: Page, keyed: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(*ANSWER_CHUNKS, stall_after=2, stall=WAIT_MS / 1000)
    await ask(page, INSTALL_QUESTION)

    await expect(page.locator("article.message.user .body")).to_have_text(INSTALL_QUESTION)
    answer = answers(page).last
    # Mid-stream: the first words are there, the rest not yet, the send button waits.
    await expect(answer.locator(".body")).to_contain_text("Install it with pip:")
    await expect(answer.locator(".body")).not_to_contain_text("bot run")
    await expect(answer).to_have_class("message assistant streaming")
    await expect(page.get_by_role("button", name="Send")).to_be_disabled()

    fake_openai.release()
    await expect(answer.locator(".body")).to_contain_text("Then start it with bot run [1].")
    await expect(answer.locator(".body strong")).to_have_text("pip")
    await expect(answer.locator(".body pre code")).to_have_text("pip install answerbot\n")
    await expect(answer.locator(".sources li").first).to_contain_text("install.md")
    await expect(answer).not_to_have_class("message assistant streaming")
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert await answers(page).count() == 1  # grown in place

    helpful = answer.get_by_role("button", name="Helpful", exact=True)
    await helpful.click()
    await expect(helpful).to_have_attribute("aria-pressed", "true")
    stored = [m for m in await stored_thread(page, keyed) if m.role == "assistant"]
    assert [m.feedback for m in stored] == [1]


async def test_shift_enter_adds_a_line_and_enter_sends(
    page: Page, keyed: Core, fake_openai: FakeOpenAI
) -> None:
    box = page.get_by_label("Your question")
    await box.type("How do I install")
    await box.press("Shift+Enter")
    await box.type("the answer bot?")
    assert await box.input_value() == "How do I install\nthe answer bot?"
    assert fake_openai.chat_requests == []
    await box.press("Enter")
    await expect(box).to_have_value("")
    await expect(answers(page).last.locator(".sources")).to_be_visible()
    (request,) = fake_openai.chat_requests
    assert "How do I install\nthe answer bot?" in request.messages[-1]["content"]


async def test_a_reload_finds_the_conversation_and_new_chat_starts_another(
    page: Page, keyed: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(*ANSWER_CHUNKS)
    await ask(page, INSTALL_QUESTION)
    await expect(answers(page).last.locator(".sources")).to_be_visible()

    await page.reload()
    await expect(page.locator("article.message.user .body")).to_have_text(INSTALL_QUESTION)
    await expect(answers(page).locator(".body")).to_contain_text("Then start it with bot run")
    await expect(answers(page).locator(".sources li").first).to_contain_text("install.md")

    await page.get_by_role("button", name="New chat").click()
    await expect(page.locator("article.message")).to_have_count(0)
    await expect(page.get_by_label("Your question")).to_be_focused()
    fake_openai.reply("A fresh answer [1].")
    await ask(page, "And how do I start the answer bot?")
    await expect(answers(page).last.locator(".body")).to_contain_text("A fresh answer")
    # A new chat has no history: the model sees no earlier turns.
    assert len(fake_openai.chat_requests[-1].messages) == 2

    await page.reload()  # the page comes back to the chat it was on
    await expect(page.locator("article.message.user .body")).to_have_text(
        "And how do I start the answer bot?"
    )


async def test_an_answer_goes_on_when_the_page_reloads_mid_stream(
    page: Page, keyed: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(*ANSWER_CHUNKS, stall_after=2, stall=WAIT_MS / 1000)
    await ask(page, INSTALL_QUESTION)
    await expect(answers(page).last.locator(".body")).to_contain_text("Install it with pip:")

    await page.reload()  # the socket closes mid-answer
    await expect(answers(page).last.locator(".body")).to_contain_text("Still answering")
    fake_openai.release()
    await expect(answers(page).last.locator(".body")).to_contain_text("bot run [1].")
    await expect(answers(page).last.locator(".sources li").first).to_contain_text("install.md")
    await expect(answers(page)).to_have_count(1)


async def test_a_failed_answer_says_so_and_the_page_recovers(
    page: Page, keyed: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(500)
    fake_openai.fail(500)
    fake_openai.fail(500)
    await ask(page, INSTALL_QUESTION)
    answer = answers(page).last
    await expect(answer.locator(".body")).to_contain_text("unavailable")
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    await expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_count(0)


# -- nothing from a question, an answer or a document runs -------------------------------------

INJECTION = (
    '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'
    "[click me](javascript:window.__pwned=1)"
)


async def assert_inert(page: Page) -> None:
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("main img, main script, main iframe").count() == 0
    hrefs = await page.locator("main a").evaluate_all("links => links.map(a => a.href)")
    assert all(href.startswith(("http:", "https:", "mailto:")) for href in hrefs), hrefs


async def test_html_in_a_question_and_in_the_answer_is_shown_as_text(
    page: Page, keyed: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Quoting: ", INJECTION, " [see](https://example.org) [1]")
    await ask(page, f"How do I install the answer bot? {INJECTION}")
    answer = answers(page).last
    await expect(answer.locator(".sources li").first).to_be_visible()

    await expect(page.locator("article.message.user .body")).to_contain_text(INJECTION)
    await expect(answer.locator(".body")).to_contain_text('<img src=x onerror="window.__pwned=1">')
    await expect(answer.locator(".body")).to_contain_text("<script>window.__pwned=1</script>")
    link = answer.get_by_role("link", name="see")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    await assert_inert(page)
    await page.reload()
    await expect(answers(page).locator(".body")).to_contain_text("<script>window.__pwned=1")
    await assert_inert(page)


async def test_html_in_a_document_is_shown_as_text(page: Page, core: Core) -> None:
    # No key: the bot quotes the best passages itself, so the document's text reaches the page.
    await ask(page, "How long do refunds take?")
    answer = answers(page).last
    await expect(answer.locator(".sources li").first).to_contain_text("refunds.md")
    await expect(answer.locator(".body")).to_contain_text("Refunds take five days.")
    await expect(answer.locator(".body")).to_contain_text("<script>window.__pwned=1</script>")
    await assert_inert(page)
    await page.reload()
    await expect(answers(page).locator(".sources li").first).to_contain_text("refunds.md")
    await assert_inert(page)


# -- the key form ------------------------------------------------------------------------------


async def test_the_settings_form_sets_a_key_and_shows_only_its_end(
    page: Page, core: Core, fake_openai: FakeOpenAI
) -> None:
    await page.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    await expect(dialog.get_by_role("status")).to_have_text(
        "No key set: answers are quoted passages only."
    )
    key_box = dialog.get_by_label("New API key")
    await expect(key_box).to_be_focused()

    await key_box.fill("sk-wrong-key-0000")
    await key_box.press("Enter")
    await expect(dialog.get_by_role("alert")).to_contain_text("rejected that key")
    assert await core.store.get_api_key(WORKSPACE) is None

    await key_box.fill("not a key")
    await key_box.press("Enter")
    await expect(dialog.get_by_role("alert")).to_contain_text("spaces")

    await key_box.fill(FAKE_KEY)
    await dialog.get_by_role("button", name="Save key").click()
    await expect(dialog.get_by_role("status")).to_have_text(
        f"A key ending in …{FAKE_KEY[-4:]} is set."
    )
    await expect(key_box).to_have_value("")
    await expect(dialog.get_by_role("alert")).to_be_hidden()
    assert FAKE_KEY not in await page.content()
    assert await core.store.get_api_key(WORKSPACE) == FAKE_KEY

    # The key is used: the next question gets a written answer from the model.
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    fake_openai.reply("Written with the new key [1].")
    await ask(page, INSTALL_QUESTION)
    await expect(answers(page).last.locator(".body")).to_contain_text("Written with the new key")
    assert fake_openai.chat_requests[-1].api_key == FAKE_KEY

    await page.reload()
    await page.get_by_role("button", name="Settings").click()
    await expect(dialog.get_by_role("status")).to_have_text(
        f"A key ending in …{FAKE_KEY[-4:]} is set."
    )
    await dialog.get_by_role("button", name="Remove key").click()
    await expect(dialog.get_by_role("status")).to_have_text(
        "No key set: answers are quoted passages only."
    )
    assert await core.store.get_api_key(WORKSPACE) is None


# -- the first screen --------------------------------------------------------------------------


async def show_the_guide(page: Page, core: Core) -> None:
    """The knowledge folder holds the bundled user guide, as with `make run`; the page reloaded."""
    for document in bundled("knowledge").glob("*.md"):
        shutil.copy(document, core.settings.knowledge_dir / document.name)
    await core.knowledge.refresh()
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-connected", "true")


async def test_the_first_screen_offers_questions_from_the_documents_and_a_click_asks(
    page: Page, core: Core
) -> None:
    await show_the_guide(page, core)
    offered = await core.suggested_questions()
    suggestions = page.get_by_role("list", name="Try asking").get_by_role("button")

    await expect(suggestions).to_have_text(offered)
    assert "How do I get started?" in offered  # the guide's "Getting started"
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(folder / "first-screen.png"))

    await suggestions.filter(has_text="How do I get started?").click()
    await expect(page.locator("article.message.user .body")).to_have_text("How do I get started?")
    answer = answers(page).last
    await expect(answer.locator(".sources li").first).to_contain_text("getting-started.md")
    await expect(page.get_by_role("heading", name="Ask about your documents")).to_be_hidden()
    [question, _] = await stored_thread(page, core)
    assert question.text == "How do I get started?"


async def test_without_a_key_the_top_says_answers_are_passages_and_how_to_set_one(
    page: Page, core: Core
) -> None:
    banner = page.locator("#key-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("No API key is set")
    await expect(banner).to_contain_text("passages quoted from the documents")

    await banner.get_by_role("button", name="Set a key").click()
    dialog = page.get_by_role("dialog", name="Settings")
    await dialog.get_by_label("New API key").fill(FAKE_KEY)
    await dialog.get_by_role("button", name="Save key").click()
    await expect(dialog.get_by_role("status")).to_contain_text("is set")
    await expect(banner).to_be_hidden()

    await page.reload()
    await expect(banner).to_have_attribute("data-checked", "true")
    await expect(banner).to_be_hidden()


async def test_with_a_key_the_first_screen_has_no_banner(page: Page, keyed: Core) -> None:
    await page.reload()  # the key was set after the page first loaded
    await expect(page.locator("body")).to_have_attribute("data-connected", "true")
    banner = page.locator("#key-banner")
    await expect(banner).to_have_attribute("data-checked", "true")  # the key was looked up
    await expect(banner).to_be_hidden()


# -- fits a phone ------------------------------------------------------------------------------


async def test_the_page_fits_a_phone_and_shows_keyboard_focus(
    page: Page, keyed: Core, fake_openai: FakeOpenAI
) -> None:
    await page.set_viewport_size(PHONE)
    fake_openai.reply(
        *ANSWER_CHUNKS, "\n\n| Setting | Default |\n|---|---|\n| HOST | 127.0.0.1 |\n"
    )
    await ask(page, INSTALL_QUESTION)
    await expect(answers(page).last.locator(".sources")).to_be_visible()
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, "the page scrolls sideways on a phone"
    await expect(page.get_by_role("button", name="Send")).to_be_in_viewport()

    await page.get_by_label("Your question").focus()
    await page.keyboard.press("Tab")
    send = page.get_by_role("button", name="Send")
    await expect(send).to_be_focused()
    outline = await send.evaluate("button => getComputedStyle(button).outlineStyle")
    assert outline != "none", "keyboard focus is invisible"
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(folder / "phone.png"), full_page=True)
        await page.set_viewport_size(DESKTOP)
        await page.screenshot(path=str(folder / "desktop.png"), full_page=True)


# -- logging in on a server --------------------------------------------------------------------


@pytest.mark.parametrize("login", ["printed link", "password form"])
async def test_a_server_chat_asks_for_a_login_then_answers(
    browser: Browser, keyed: Core, fake_openai: FakeOpenAI, login: str
) -> None:
    password = "correct horse battery staple"
    all_interfaces = "0.0.0.0"  # noqa: S104 - a HOST setting under test; the server binds loopback
    secret = SecretStr(password)
    update = {"host": all_interfaces} if login == "printed link" else {"web_password": secret}
    app = web.Application()
    add_web_routes(app, keyed.settings.model_copy(update=update), keyed)
    runner, port = await start_chat(app)
    context = await browser.new_context(viewport=DESKTOP)
    try:
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")
        await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        if login == "printed link":
            found = re.search(r"\?token=([\w-]+)", app[WEB_ACCESS].start_message())
            assert found is not None
            await page.goto(f"http://127.0.0.1:{port}/?token={found.group(1)}")
        else:
            await page.get_by_label("Password").fill("not the password")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("alert")).to_contain_text("password is wrong")
            await page.get_by_label("Password").fill(password)
            await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("body")).to_have_attribute("data-connected", "true")
        assert page.url == f"http://127.0.0.1:{port}/"  # the token left the address bar
        fake_openai.reply("Logged in and answered [1].")
        await ask(page, INSTALL_QUESTION)
        await expect(answers(page).last.locator(".body")).to_contain_text("Logged in and answered")
    finally:
        await context.close()
        await runner.cleanup()
