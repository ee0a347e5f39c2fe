"""A loopback fake of the Slack Web API, and a fake of Slack sending events to the bot.

It keeps message state per channel (text, blocks, thread, edit history), enforces the limits the
bot must live with (chat.update per workspace, chat.postMessage per channel: 429 + Retry-After;
msg_too_long; section blocks past 3,000 characters), fails a method with HTTP 500 for a while
when a test asks (`outage`), knows which token belongs to which workspace, and checks every
call against Slack's published specs (tests/specs): the method exists, its required arguments
are present, no unknown argument is sent. Anything wrong is kept in `violations`, which every
test asserts empty. It also signs Events API, slash-command and interactivity requests the way
Slack does and posts them to the bot, and it serves Socket Mode.

    server.py   FakeSlack: the aiohttp app, /api/{method}, response URLs, Socket Mode
    web_api.py  the Web API methods it serves, from the state
    state.py    workspaces, people, messages, the calls made; the fake app's credentials
    rules.py    rate-limit windows, size limits, the spec's methods and arguments
    markdown.py standard Markdown (markdown_text, the markdown block), the feedback buttons
                element, a workspace whose Slack refuses them, who a message would notify
    events.py   Slack calling the bot: signed events, commands, clicks, modal submissions,
                Socket Mode pushes
    views.py    modals: trigger_ids, views.open, what a submission's answer does to a view
    assistant.py  assistant threads (the app's agent view): setStatus, suggested prompts, titles
    streams.py  native streaming: chat.startStream/appendStream/stopStream, their windows, a
                stream's lifetime and size, streaming_state_conflict
"""

from tests.fakes.slack.assistant import AssistantThread
from tests.fakes.slack.rules import MAX_TEXT, SECTION_LIMIT, SPECS, Window
from tests.fakes.slack.server import FakeSlack
from tests.fakes.slack.state import (
    APP_ID,
    APP_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    SIGNING_SECRET,
    Call,
    Message,
    Team,
    User,
)
from tests.fakes.slack.views import View

__all__ = [
    "APP_ID",
    "APP_TOKEN",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "MAX_TEXT",
    "SECTION_LIMIT",
    "SIGNING_SECRET",
    "SPECS",
    "AssistantThread",
    "Call",
    "FakeSlack",
    "Message",
    "Team",
    "User",
    "View",
    "Window",
]
