"""Key encryption: round trip, workspace binding, master key generation and reuse."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.vault import SECRET_FILE_NAME, Vault, last4, load_master_key


def test_round_trip_and_ciphertext_hides_the_key(tmp_path: Path) -> None:
    vault = Vault(load_master_key(None, tmp_path))
    sealed = vault.encrypt("sk-live-1234567890abcd", workspace="slack:T1")
    assert b"sk-live" not in sealed and b"abcd" not in sealed
    assert vault.decrypt(sealed, workspace="slack:T1") == "sk-live-1234567890abcd"


def test_a_ciphertext_moved_to_another_workspace_does_not_decrypt(tmp_path: Path) -> None:
    vault = Vault(load_master_key("operator secret", tmp_path))
    sealed = vault.encrypt("sk-team-one", workspace="slack:T1")
    with pytest.raises(ConfigError):
        vault.decrypt(sealed, workspace="slack:T2")


def test_generated_master_key_is_private_and_reused(tmp_path: Path) -> None:
    first = load_master_key(None, tmp_path)
    mode = stat.S_IMODE((tmp_path / SECRET_FILE_NAME).stat().st_mode)
    assert mode == 0o600
    assert load_master_key(None, tmp_path) == first


def test_changed_secret_key_is_reported_not_crashing(tmp_path: Path) -> None:
    sealed = Vault(load_master_key("one", tmp_path)).encrypt("sk-x", workspace="w")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Vault(load_master_key("two", tmp_path)).decrypt(sealed, workspace="w")


def test_last4() -> None:
    assert last4("sk-abcdefgh") == "efgh"
