"""The vendored API specs are the published ones, unchanged."""

from __future__ import annotations

import pytest

from tests.fakes.spec_files import SHARED_SPECS_DIR, SPECS_DIR


def test_vendored_specs_are_present() -> None:
    for name in ("openai-openapi.json", "discord-openapi.json", "slack-web-openapi-v2.json"):
        assert (SPECS_DIR / name).stat().st_size > 100_000, name
    assert list((SPECS_DIR / "slack-methods").glob("*.json"))


def test_vendored_specs_match_the_shared_copy() -> None:
    if not SHARED_SPECS_DIR.is_dir():
        pytest.skip("no ../shared/specs beside this clone to compare with")
    for shared in sorted(SHARED_SPECS_DIR.rglob("*.json")):
        copy = SPECS_DIR / shared.relative_to(SHARED_SPECS_DIR)
        assert copy.read_bytes() == shared.read_bytes(), f"{copy} differs from {shared}"
