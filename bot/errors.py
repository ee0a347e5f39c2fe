"""The bot's error tree: every failure a user can see has a type here and a short message for them.

    BotError                      user_message: one short sentence safe to show in chat
    ├── ConfigError               the deployment is misconfigured (operator's problem)
    ├── InputError                what the user typed cannot be used (empty key, unknown subcommand)
    ├── ModelError                the OpenAI-compatible endpoint failed
    │   ├── InvalidApiKey         401/403: the key is wrong, revoked, or lacks access
    │   ├── RateLimited           429: retry_after seconds, when the endpoint said
    │   ├── ModelUnavailable      unknown model, 5xx, connection refused
    │   └── ModelTimeout          no chunk within the idle timeout, or the overall cap passed
    └── PlatformError             Slack / Discord / web refused a call (this class: for good)
        ├── PlatformRateLimited   429 from the platform: retry_after seconds, shared by the budget
        └── PlatformUnavailable   5xx, timeout, dropped connection: the platform may answer later

Adapters catch BotError at their edge, log it, and show `user_message`; messages never contain a
secret, so they are safe to log and to post.
"""

from __future__ import annotations

# What a person sees when an answer crashed for a reason that is no BotError (a bug): the same
# sentence from the core and from every adapter's last-resort handler.
ANSWER_CRASHED = "Something went wrong while answering; the error was logged."
# What a person sees on an answer the bot stopped writing because it was stopped or restarted
# (at shutdown after the grace period, or at the next start after a crash).
INTERRUPTED = "This answer was interrupted because the bot restarted. Please ask again."


class BotError(Exception):
    """Base of every error the bot raises on purpose."""

    user_message = "Something went wrong while answering."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.user_message)
        self.detail = detail or self.user_message


class ConfigError(BotError):
    user_message = "The bot is not configured correctly; an operator needs to check its settings."


class InputError(BotError):
    """Bad input from a user; `detail` is the message to show them."""

    user_message = "That input can't be used."

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.user_message = detail


class ModelError(BotError):
    user_message = "The language model failed to answer."


class InvalidApiKey(ModelError):
    user_message = (
        "The API key was rejected by the model endpoint; an admin can set a new one with /setkey."
    )


class RateLimited(ModelError):
    user_message = "The model endpoint is rate limiting this workspace; try again in a moment."

    def __init__(self, detail: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ModelUnavailable(ModelError):
    user_message = "The model endpoint is unavailable or doesn't serve the configured model."


class ModelTimeout(ModelError):
    user_message = "The model took too long to answer."


class PlatformError(BotError):
    user_message = "The chat platform refused a request."


class PlatformRateLimited(PlatformError):
    user_message = "The chat platform is rate limiting the bot."

    def __init__(self, retry_after: float, detail: str | None = None) -> None:
        super().__init__(detail or f"rate limited; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class PlatformUnavailable(PlatformError):
    """A call that failed on the platform's side or on the way (HTTP 5xx, Slack's
    `internal_error`-like codes, a timeout, a dropped connection): the same call may well land
    later, so the streaming editor retries it with backoff (`bot.streaming.retry`)."""

    user_message = "The chat platform is having trouble right now."
