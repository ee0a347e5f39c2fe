"""Secrets are masked in log output even when something logs them by accident."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from bot.logs import RedactingFilter, configure_logging
from bot.settings import Settings


def test_known_secrets_and_secret_shapes_are_masked() -> None:
    redactor = RedactingFilter(["operator-signing-secret"])
    text = (
        "sig operator-signing-secret key sk-proj-abcdef123456 slack xoxb-1111-2222-abcdefgh "
        "app xapp-1-A111-222-abcdef"
    )
    clean = redactor.redact(text)
    for secret in ("operator-signing-secret", "sk-proj-abcdef123456", "xoxb-1111", "xapp-1-A111"):
        assert secret not in clean
    assert clean.count("[redacted]") == 4


def test_configured_logging_masks_messages_args_and_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        openai_api_key=SecretStr("fallback-key-value"),
        log_level="DEBUG",
    )
    configure_logging(settings)
    logger = logging.getLogger("test.logs")
    logger.info("using %s", "fallback-key-value")
    try:
        raise RuntimeError("bad key sk-leaked-0123456789")
    except RuntimeError:
        logger.exception("failed")
    err = capsys.readouterr().err
    assert "fallback-key-value" not in err
    assert "sk-leaked-0123456789" not in err
    assert "RuntimeError" in err  # the traceback itself is kept
    logging.getLogger().handlers.clear()
