"""Assistant threads in the fake Slack: the app's DM/agent view, where every conversation is a
thread. `open_assistant_thread` opens one as Slack does (the thread's parent in the person's DM
with the app, then `assistant_thread_started` for the bot: see `SlackSender`);
assistant.threads.setStatus, setSuggestedPrompts and setTitle are served and remembered per
thread, and a reply the app posts in the thread clears its status, as Slack does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.slack.state import Message, Team
from tests.fakes.slack.views import Answer, ViewsApi

# Not in tests/specs (its Swagger file predates them, slack-methods/ has setStatus only): the
# arguments of slack-ruby/slack-api-ref methods/assistant/, the source of slack-methods/.
ASSISTANT_ARGS = {
    "assistant.threads.setSuggestedPrompts": ({"channel_id", "thread_ts", "prompts"}, {"title"}),
    "assistant.threads.setTitle": ({"channel_id", "thread_ts", "title"}, set()),
}
MAX_PROMPTS = 4  # Slack shows at most four suggested prompts
MAX_LOADING_MESSAGES = 10  # setStatus's loading_messages: "Maximum of 10 messages"


@dataclass
class AssistantThread:
    """One assistant thread and what the app has shown in it."""

    team: str
    channel: str  # the person's DM with the app
    thread_ts: str
    user: str
    status: str = ""  # the status showing now ("" when none)
    statuses: list[str] = field(default_factory=list)  # every status, "" when it was cleared
    loading_messages: list[list[str]] = field(default_factory=list)  # with each status set
    prompts: list[dict[str, str]] = field(default_factory=list)
    prompts_title: str | None = None
    titles: list[str] = field(default_factory=list)


def add_assistant_specs(known: dict[str, set[str]], required: dict[str, set[str]]) -> None:
    """Add the assistant methods tests/specs lacks to the spec's known and required arguments."""
    for method, (needed, optional) in ASSISTANT_ARGS.items():
        known[method] = needed | optional
        required[method] = set(needed)


class AssistantApi(ViewsApi):
    """The assistant threads opened and the assistant.threads.* methods."""

    def __init__(self) -> None:
        super().__init__()
        self.assistant_threads: dict[tuple[str, str], AssistantThread] = {}

    def open_assistant_thread(self, team_id: str, user: str) -> AssistantThread:
        """A person opens a new chat with the app: its parent message in their DM."""
        channel = f"D{user}"
        self.channels.setdefault(channel, team_id)
        self.channel_types[channel] = "im"
        parent = Message(channel=channel, ts=self._next_ts(), text="", user=user)
        self.messages[(channel, parent.ts)] = parent
        thread = AssistantThread(team_id, channel, parent.ts, user)
        self.assistant_threads[(channel, parent.ts)] = thread
        return thread

    def assistant_thread_started(self, thread: AssistantThread) -> dict[str, Any]:
        """The event Slack sends the app when a person opens an assistant thread."""
        return {
            "type": "assistant_thread_started",
            "assistant_thread": {
                "user_id": thread.user,
                "context": {"channel_id": None, "team_id": thread.team, "enterprise_id": None},
                "channel_id": thread.channel,
                "thread_ts": thread.thread_ts,
            },
            "event_ts": self._next_ts(),
        }

    def replied_in_thread(self, channel: str, thread_ts: str | None) -> None:
        """The app posted in a thread: an assistant thread's status goes away."""
        thread = self.assistant_threads.get((channel, thread_ts or ""))
        if thread is not None and thread.status:
            thread.status = ""
            thread.statuses.append("")

    def assistant_call(self, method: str, args: dict[str, Any], team: Team) -> Answer:
        channel = str(args.get("channel_id"))
        if self.channels.get(channel) != team.id:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        thread = self.assistant_threads.get((channel, str(args.get("thread_ts"))))
        if thread is None:
            return 200, {"ok": False, "error": "invalid_thread_ts"}, {}
        if method == "assistant.threads.setStatus":
            loading = list(args.get("loading_messages") or [])
            if len(loading) > MAX_LOADING_MESSAGES or not isinstance(args.get("status"), str):
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            thread.status = str(args["status"])
            thread.statuses.append(thread.status)
            thread.loading_messages.append(loading)
        elif method == "assistant.threads.setSuggestedPrompts":
            prompts = args.get("prompts")
            if not isinstance(prompts, list) or not 0 < len(prompts) <= MAX_PROMPTS:
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            if not all(p.get("title") and p.get("message") for p in prompts):
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            thread.prompts = [{"title": p["title"], "message": p["message"]} for p in prompts]
            thread.prompts_title = args.get("title")
        elif method == "assistant.threads.setTitle":
            if not str(args.get("title") or "").strip():
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            thread.titles.append(str(args["title"]))
        else:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        return 200, {"ok": True}, {}
