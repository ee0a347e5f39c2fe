"""Key encryption: round trip, binding to owner and kind, HKDF, the first release's format, and
the master secret file (created whole and once, even by processes starting together; an unusable
one is an error, never silently replaced)."""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.errors import ConfigError
from bot.vault import (
    API_KEY,
    SECRET_FILE_NAME,
    SLACK_INSTALLATION,
    Vault,
    last4,
    load_master_key,
)

PROCESSES = 6  # started together, racing to create the secret file
ROUNDS = 15  # races per test run: each one a fresh DATA_DIR


def seal_like_the_first_release(secret: bytes, plaintext: str, workspace: str) -> bytes:
    """A value as the first release sealed it: SHA-256 key, bound to the workspace only."""
    key = hashlib.sha256(b"answerbot-vault-v1:" + secret).digest()
    nonce = os.urandom(12)
    return b"\x01" + nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), workspace.encode())


def test_round_trip_and_ciphertext_hides_the_key(tmp_path: Path) -> None:
    vault = Vault(load_master_key(None, tmp_path))
    sealed = vault.encrypt("sk-live-1234567890abcd", kind=API_KEY, workspace="slack:T1")
    assert b"sk-live" not in sealed and b"abcd" not in sealed
    assert vault.decrypt(sealed, kind=API_KEY, workspace="slack:T1") == "sk-live-1234567890abcd"


def test_a_ciphertext_moved_to_another_workspace_does_not_decrypt(tmp_path: Path) -> None:
    vault = Vault(load_master_key("operator secret", tmp_path))
    sealed = vault.encrypt("sk-team-one", kind=API_KEY, workspace="slack:T1")
    with pytest.raises(ConfigError):
        vault.decrypt(sealed, kind=API_KEY, workspace="slack:T2")


def test_a_value_sealed_as_one_kind_does_not_open_as_another() -> None:
    vault = Vault(b"operator secret")
    key = vault.encrypt("sk-team-one-0000", kind=API_KEY, workspace="slack:T1")
    installation = vault.encrypt('{"bot_token": "xoxb-1"}', kind=SLACK_INSTALLATION, workspace="s")
    # Same owner id in both tables: only the kind tells the rows apart.
    with pytest.raises(ConfigError, match="Slack installation"):
        vault.decrypt(key, kind=SLACK_INSTALLATION, workspace="slack:T1")
    with pytest.raises(ConfigError, match="API key"):
        vault.decrypt(installation, kind=API_KEY, workspace="s")


def test_the_key_is_derived_with_hkdf_and_bound_to_kind_and_owner() -> None:
    secret = b"operator secret"
    sealed = Vault(secret).encrypt("sk-team-one-0000", kind=API_KEY, workspace="slack:T1")
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"answerbot vault v2: AES-256-GCM key for stored secrets",
    ).derive(secret)
    assert sealed[:1] == b"\x02"
    plain = AESGCM(key).decrypt(sealed[1:13], sealed[13:], b"api-key:slack:T1")
    assert plain == b"sk-team-one-0000"


def test_values_sealed_by_the_first_release_still_open(tmp_path: Path) -> None:
    secret = load_master_key(None, tmp_path)  # the file the first release generated
    old = seal_like_the_first_release(secret, "sk-from-last-year-0000", "slack:T1")
    assert Vault(secret).decrypt(old, kind=API_KEY, workspace="slack:T1") == (
        "sk-from-last-year-0000"
    )
    with pytest.raises(ConfigError):
        Vault(secret).decrypt(old, kind=API_KEY, workspace="slack:T2")
    env_old = seal_like_the_first_release(b"from SECRET_KEY", "sk-env-0000", "w")
    vault = Vault(load_master_key("from SECRET_KEY", tmp_path))
    assert vault.decrypt(env_old, kind=API_KEY, workspace="w") == "sk-env-0000"


def test_a_vault_with_two_secrets_seals_under_the_first_and_opens_under_either() -> None:
    old, new = b"the old secret", b"the new secret"
    under_old = Vault(old).encrypt("sk-a-00000000", kind=API_KEY, workspace="w")
    both = Vault(new, old)
    assert both.decrypt(under_old, kind=API_KEY, workspace="w") == "sk-a-00000000"
    under_new = both.encrypt("sk-b-00000000", kind=API_KEY, workspace="w")
    assert Vault(new).decrypt(under_new, kind=API_KEY, workspace="w") == "sk-b-00000000"
    with pytest.raises(ConfigError):
        Vault(old).decrypt(under_new, kind=API_KEY, workspace="w")


def test_generated_master_key_is_private_and_reused(tmp_path: Path) -> None:
    first = load_master_key(None, tmp_path)
    mode = stat.S_IMODE((tmp_path / SECRET_FILE_NAME).stat().st_mode)
    assert mode == 0o600
    assert load_master_key(None, tmp_path) == first
    assert len(base64.urlsafe_b64decode(first)) == 32


def test_changed_secret_key_is_reported_not_crashing(tmp_path: Path) -> None:
    sealed = Vault(load_master_key("one", tmp_path)).encrypt("sk-x", kind=API_KEY, workspace="w")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Vault(load_master_key("two", tmp_path)).decrypt(sealed, kind=API_KEY, workspace="w")


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b"", "is empty"),
        (b"\n \n", "is empty"),
        (b"c2hvcnQ=\n", "is damaged"),
        (b"\xff\x00", "is damaged"),
    ],
    ids=["empty", "blank", "truncated", "binary"],
)
def test_an_unusable_secret_file_is_an_error_not_a_new_secret(
    tmp_path: Path, content: bytes, complaint: str
) -> None:
    path = tmp_path / SECRET_FILE_NAME
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=complaint) as raised:
        load_master_key(None, tmp_path)
    assert "restore it" in str(raised.value)
    assert path.read_bytes() == content  # left for the operator to restore, not overwritten


class _FullDisk:
    """A file object whose write fails, as on a full disk or a crash mid-write."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def write(self, data: object) -> int:
        raise OSError(28, "No space left on device")


def test_a_failed_first_write_leaves_no_secret_file_and_the_next_start_makes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(OSError, match="No space"):
        load_master_key(None, tmp_path)
    monkeypatch.undo()
    assert not (tmp_path / SECRET_FILE_NAME).exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left behind either
    assert len(base64.urlsafe_b64decode(load_master_key(None, tmp_path))) == 32


def _load_when_released(barrier: Any, data_dir: str, results: Any) -> None:
    barrier.wait()
    try:
        results.put(load_master_key(None, Path(data_dir)).hex())
    except Exception as error:
        results.put(f"{type(error).__name__}: {error}")


def test_processes_starting_together_share_one_whole_secret(tmp_path: Path) -> None:
    # fork: the children start with bot.vault imported, so the barrier releases them within
    # microseconds of each other, inside the window between creating the file and filling it.
    context = multiprocessing.get_context("fork")
    for round_number in range(ROUNDS):
        data_dir = tmp_path / f"data{round_number}"
        barrier = context.Barrier(PROCESSES)
        results = context.Queue()
        children = [
            context.Process(target=_load_when_released, args=(barrier, str(data_dir), results))
            for _ in range(PROCESSES)
        ]
        for child in children:
            child.start()
        seen = [results.get(timeout=30) for _ in children]
        for child in children:
            child.join(timeout=30)
            assert child.exitcode == 0
        assert len(set(seen)) == 1, f"round {round_number}: {seen}"
        assert bytes.fromhex(seen[0]) == load_master_key(None, data_dir)
        assert sorted(p.name for p in data_dir.iterdir()) == [SECRET_FILE_NAME]


def test_last4() -> None:
    assert last4("sk-abcdefgh") == "efgh"
