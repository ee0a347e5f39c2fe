"""Secrets are masked in log output even when something logs them by accident: values the bot
knows (settings, keys set or decrypted), the shapes of the usual keys and tokens, in messages,
tracebacks and stacks; and a log call that can't be formatted never raises into its caller."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from bot.keys import KeyAdmin
from bot.logs import REDACTED, WITHHELD, configure_logging, known_secrets
from bot.settings import Settings
from bot.store import Store
from bot.vault import Vault, load_master_key
from tests.fakes.openai import FakeOpenAI

Output = Callable[[], str]
# A key of no known shape: only the registry of known secrets can mask it.
PLAIN_KEY = "wk-Plain0Workspace0Key0Zz"
WORKSPACE = "discord:42"


def discord_token(user_id: str) -> str:
    """A token of Discord's shape: base64url(user id) . timestamp . HMAC."""
    first = base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
    return f"{first}.GhXy9z.{'k3Yq_-' * 6}Ab"


SHAPED = {
    "openai": "sk-proj-abcdef1234567890",
    "groq": "gsk_" + "A1b2C3d4E5" * 5 + "Zz",
    "google": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"[:35],
    "hex": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "slack bot": "xoxb-1111-2222-abcdefghijkl",
    "slack user": "xoxp-1111-2222-3333-abcdefghijkl",
    "slack refresh": "xoxe-1-abcdefghijklmnop",
    "slack app": "xapp-1-A111-222-abcdef",
    "discord M": discord_token("1086499999999999999"),
    "discord N": discord_token("512345678901234567"),
    "discord O": discord_token("876543210987654321"),
}


@pytest.fixture
def output() -> Iterator[Output]:
    """The root logger as `bot` configures it, writing into a buffer the test reads."""
    yield from configured("text")


@pytest.fixture
def json_output() -> Iterator[Output]:
    """The same with LOG_FORMAT=json."""
    yield from configured("json")


def configured(log_format: Literal["text", "json"]) -> Iterator[Output]:
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    level = root.level
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        openai_api_key=SecretStr("fallback-key-value"),
        slack_signing_secret=SecretStr("operator-signing-secret"),
        log_level="DEBUG",
        log_format=log_format,
    )
    configure_logging(settings)
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield buffer.getvalue
    # pytest adds and removes its own capturing handlers around each phase; only ours goes.
    root.removeHandler(handler)
    root.setLevel(level)
    # configure_logging quiets some libraries; later tests (caplog at DEBUG) expect them as found.
    for name in logging.root.manager.loggerDict:
        logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))


@pytest.mark.parametrize("secret", SHAPED.values(), ids=SHAPED.keys())
def test_each_secret_shape_is_masked(output: Output, secret: str) -> None:
    logging.getLogger("some.library").info("sending %s to the endpoint", secret)
    err = output()
    assert secret not in err
    assert f"sending {REDACTED} to the endpoint" in err


def test_a_bearer_token_of_any_shape_is_masked(output: Output) -> None:
    logging.getLogger("some.library").debug("headers: {'Authorization': 'Bearer 0pAque.T0ken'}")
    err = output()
    assert "0pAque" not in err
    assert f"Bearer {REDACTED}" in err


def test_ordinary_text_is_left_alone(output: Output) -> None:
    text = "GET /v1/models 200 in 12ms for bot.knowledge.index id 123e4567-e89b-12d3 deadbeef"
    logging.getLogger("some.library").info(text)
    assert text in output()


def test_settings_secrets_are_masked(output: Output) -> None:
    logging.getLogger("test.logs").info("using %s and %s", "fallback-key-value", "x")
    logging.getLogger("test.logs").info("verifying with operator-signing-secret")
    err = output()
    assert "fallback-key-value" not in err and "operator-signing-secret" not in err


@pytest.fixture
async def store(fake_settings: Settings) -> AsyncIterator[Store]:
    vault = Vault(load_master_key(None, fake_settings.data_dir))
    store = await Store.open(fake_settings.database_path, vault)
    yield store
    await store.close()


async def test_a_key_set_with_setkey_is_masked_wherever_it_is_logged_later(
    output: Output, fake_settings: Settings, store: Store, fake_openai: FakeOpenAI
) -> None:
    assert fake_openai.keys is not None
    fake_openai.keys.add(PLAIN_KEY)
    await KeyAdmin(fake_settings, store).set(WORKSPACE, PLAIN_KEY, by="U1")
    # Some other code path (a library's debug dump) logs the key in clear.
    logging.getLogger("openai._base_client").debug("headers: {'api-key': '%s'}", PLAIN_KEY)
    err = output()
    assert PLAIN_KEY not in err
    assert f"'api-key': '{REDACTED}'" in err


async def test_a_key_decrypted_from_the_database_is_masked(
    output: Output, fake_settings: Settings, store: Store
) -> None:
    await store.set_api_key(WORKSPACE, PLAIN_KEY)
    known_secrets.clear()  # as in a new process: the key is only in the database
    assert await store.get_api_key(WORKSPACE) == PLAIN_KEY
    logging.getLogger("some.library").warning("retrying with %s", PLAIN_KEY)
    assert PLAIN_KEY not in output()


def test_tracebacks_are_masked_and_kept(output: Output) -> None:
    log = logging.getLogger("test.logs")
    try:
        try:
            raise ValueError("endpoint said: bad key fallback-key-value")
        except ValueError as cause:
            raise RuntimeError("request with sk-leaked-0123456789 failed") from cause
    except RuntimeError:
        log.exception("failed")
    err = output()
    assert "sk-leaked-0123456789" not in err and "fallback-key-value" not in err
    assert "Traceback" in err and "RuntimeError" in err and "ValueError" in err


def test_a_traceback_rendered_before_it_reached_the_handler_is_masked(output: Output) -> None:
    # A record from a SocketHandler or another process arrives with exc_text and no exc_info.
    log = logging.getLogger("test.logs")
    record = log.makeRecord(log.name, logging.ERROR, __file__, 1, "remote failure", None, None)
    record.exc_text = "Traceback (most recent call last):\nRuntimeError: token xoxb-1-2-abcdefghij"
    log.handle(record)
    err = output()
    assert "xoxb-1-2-abcdefghij" not in err
    assert f"RuntimeError: token {REDACTED}" in err


def test_stack_info_is_masked(output: Output) -> None:
    log = logging.getLogger("test.logs")
    stack = (
        'Stack (most recent call last):\n  File "x.py", line 3\n    connect("sk-in-stack-12345678")'
    )
    record = log.makeRecord(log.name, logging.INFO, __file__, 1, "where", None, None, sinfo=stack)
    log.handle(record)
    err = output()
    assert "sk-in-stack-12345678" not in err
    assert f'connect("{REDACTED}")' in err


def test_stack_info_of_a_real_call_is_masked(output: Output) -> None:
    def connect(token: str) -> None:  # the token is in this frame's source line below
        logging.getLogger("test.logs").info("connecting", stack_info=True)

    connect("xoxb-9999-8888-frameSourceLine")
    err = output()
    assert "Stack (most recent call last)" in err
    assert "frameSourceLine" not in err


def test_a_malformed_log_call_does_not_raise_and_still_masks(output: Output) -> None:
    log = logging.getLogger("test.logs")
    log.info("%s and %s", "sk-only-one-argument-1")  # one argument for two placeholders
    log.info("%(missing)s", {"other": 1})
    log.info("%d items", "not a number")
    err = output()
    assert "sk-only-one-argument-1" not in err
    assert "%s and %s (log arguments did not fit the format" in err
    assert "%(missing)s (log arguments" in err and "%d items (log arguments" in err


def test_a_value_that_cannot_be_rendered_is_withheld_not_raised(output: Output) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    logging.getLogger("test.logs").info("%s", Hostile())
    assert WITHHELD in output()


def test_registered_secrets_are_masked_in_any_record(tmp_path: Path, output: Output) -> None:
    # The generated master secret is registered when it is loaded.
    load_master_key(None, tmp_path)
    secret = (tmp_path / "secret.key").read_text().strip()
    logging.getLogger("test.logs").info("secret file says %s", secret)
    assert secret not in output()


def json_records(text: str) -> list[dict[str, Any]]:
    """Each line of LOG_FORMAT=json output as the object it must be, one per line."""
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_parse_with_their_fields_and_mask_secrets_everywhere(
    json_output: Output,
) -> None:
    log = logging.getLogger("test.logs")
    log.info("answered in %s", WORKSPACE, extra={"platform": "discord", "writes": 3})
    try:
        raise RuntimeError("the endpoint refused sk-leaked-0123456789 (fallback-key-value)")
    except RuntimeError:
        log.exception(
            "answer crashed",
            extra={"request": {"headers": {"authorization": "Bearer fallback-key-value"}}},
        )
    log.warning("settings", extra={"seen": SecretHolder("operator-signing-secret")})
    text = json_output()
    answered, crashed, settings = json_records(text)
    assert answered["level"] == "INFO" and answered["logger"] == "test.logs"
    assert answered["message"] == "answered in discord:42"
    assert answered["platform"] == "discord" and answered["writes"] == 3
    assert answered["time"].endswith("+00:00")  # ISO 8601, UTC
    assert crashed["level"] == "ERROR" and crashed["message"] == "answer crashed"
    assert "Traceback" in crashed["exception"] and "RuntimeError" in crashed["exception"]
    assert crashed["request"] == {"headers": {"authorization": f"Bearer {REDACTED}"}}
    assert settings["seen"] == f"holding {REDACTED}"
    for secret in ("sk-leaked-0123456789", "fallback-key-value", "operator-signing-secret"):
        assert secret not in text


class SecretHolder:
    """An extra field that is no JSON value: written as its str(), which holds a secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __str__(self) -> str:
        return f"holding {self.secret}"
