"""Encryption of stored secrets: AES-256-GCM under a key derived (HKDF) from the master secret.

The master secret is `SECRET_KEY` when set; otherwise one is generated once into
`DATA_DIR/secret.key` (0600, created atomically, see `bot.private_files.create_private`).
A sealed value is bound by its associated data to its kind and owner (`api-key:slack:T1`,
`slack-installation:slack:T1`): copied onto another workspace's row, or from the API-key table
into the installations table, it fails to decrypt instead of being read as something else.

Sealed values start with a version byte. Version 2 is the above; version 1 (before HKDF and
kinds: SHA-256 of the secret, bound to the owner only) still opens, so stored keys survive the
upgrade; `bot rotate-key` re-seals everything as version 2. A `secret.key.next` beside
`secret.key` is a rotation in progress (`bot.rotation`): values open under either secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import secrets
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.errors import ConfigError
from bot.logs import register_secret
from bot.private_files import PRIVATE_FILE_MODE, create_private, private_dir
from bot.settings import Settings

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "secret.key"  # noqa: S105 - a file name, not a secret
NEXT_SECRET_FILE_NAME = "secret.key.next"  # noqa: S105 - a rotation in progress
SECRET_BYTES = 32  # a generated secret: 256 random bits, stored base64url-encoded

Kind = Literal["api-key", "slack-installation", "answer-address"]
API_KEY: Kind = "api-key"
SLACK_INSTALLATION: Kind = "slack-installation"
ANSWER_ADDRESS: Kind = "answer-address"  # where an answer in flight is shown
# What a kind's plaintext is called in errors; an API key's plaintext is itself a secret to mask.
_KIND_NAMES: dict[Kind, str] = {
    API_KEY: "API key",
    SLACK_INSTALLATION: "Slack installation",
    ANSWER_ADDRESS: "answer address",
}

_NONCE_BYTES = 12
_V1 = b"\x01"  # SHA-256("answerbot-vault-v1:" + secret), associated data: the owner
_V2 = b"\x02"  # HKDF-SHA256(secret), associated data: kind + ":" + owner
_HKDF_INFO = b"answerbot vault v2: AES-256-GCM key for stored secrets"


def _v2_key(secret: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return AESGCM(hkdf.derive(secret))


def _v1_key(secret: bytes) -> AESGCM:
    # The derivation of the first release, kept only to open what it sealed.
    return AESGCM(hashlib.sha256(b"answerbot-vault-v1:" + secret).digest())


class Vault:
    """Seals and opens small secrets; seals under the first master secret, opens under any."""

    def __init__(self, secret: bytes, *others: bytes) -> None:
        if not secret or not all(others):
            raise ValueError("a master secret can't be empty")
        unique = list(dict.fromkeys((secret, *others)))
        self._sealing = _v2_key(secret)
        self._opening = {_V2: [_v2_key(s) for s in unique], _V1: [_v1_key(s) for s in unique]}

    def encrypt(self, plaintext: str, *, kind: Kind, workspace: str) -> bytes:
        if kind == API_KEY:
            register_secret(plaintext)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._sealing.encrypt(nonce, plaintext.encode(), _bound(kind, workspace))
        return _V2 + nonce + sealed

    def decrypt(self, blob: bytes, *, kind: Kind, workspace: str) -> str:
        version, nonce, sealed = blob[:1], blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        keys = self._opening.get(version)
        if keys is None:
            raise ConfigError(f"a stored {_KIND_NAMES[kind]} has an unknown format")
        bound = _bound(kind, workspace) if version == _V2 else workspace.encode()
        for key in keys:
            try:
                plaintext = key.decrypt(nonce, sealed, bound).decode()
            except InvalidTag:
                continue
            if kind == API_KEY:
                register_secret(plaintext)
            return plaintext
        raise ConfigError(
            f"a stored {_KIND_NAMES[kind]} can't be decrypted: SECRET_KEY or DATA_DIR/secret.key "
            "changed since it was stored"
        )


def _bound(kind: Kind, workspace: str) -> bytes:
    return f"{kind}:{workspace}".encode()


def require_shared_secret(settings: Settings) -> None:
    """A ConfigError when DATABASE_URL is set without SECRET_KEY: replicas share the database,
    and a secret generated into one replica's DATA_DIR could not open what another sealed."""
    if settings.database_url is not None and settings.secret_key is None:
        raise ConfigError(
            "DATABASE_URL is set but SECRET_KEY is not: a shared database needs SECRET_KEY from "
            "the environment, the same on every replica (a key generated into one replica's "
            "DATA_DIR cannot open what another sealed)"
        )


def open_vault(settings: Settings) -> Vault:
    """The deployment's vault: SECRET_KEY, or the secret(s) in DATA_DIR (never with a shared
    database: `require_shared_secret`)."""
    require_shared_secret(settings)
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    return Vault(*load_secrets(secret, settings.data_dir))


def load_master_key(secret_key: str | None, data_dir: Path) -> bytes:
    """The master secret values are sealed under: SECRET_KEY, or DATA_DIR's (made if needed)."""
    return load_secrets(secret_key, data_dir)[0]


def load_secrets(secret_key: str | None, data_dir: Path) -> list[bytes]:
    """The master secret first, then a rotation's next secret if one is in progress."""
    if secret_key:
        return [secret_key.encode()]
    private_dir(data_dir)
    path = data_dir / SECRET_FILE_NAME
    if not path.exists():
        # Losing the race to another process starting now is fine: we then read its file.
        create_private(path, new_secret())
    found = [read_secret(path)]
    pending = data_dir / NEXT_SECRET_FILE_NAME
    if pending.exists():
        log.warning("a key rotation was interrupted: run `bot rotate-key` again to finish it")
        found.append(read_secret(pending))
    return found


def new_secret() -> bytes:
    """A fresh master secret as the file holds it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)) + b"\n"


def read_secret(path: Path) -> bytes:
    """The secret a secret file holds; ConfigError, never a new secret, if it is unusable."""
    text = path.read_bytes().strip()
    restore = (
        "restore it from a backup (or set SECRET_KEY to the secret it held); a new secret would "
        "not open the API keys already stored"
    )
    if not text:
        raise ConfigError(f"{path} is empty: {restore}")
    try:
        decoded = base64.b64decode(text, altchars=b"-_", validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != SECRET_BYTES:
        raise ConfigError(f"{path} is damaged (not a secret the bot wrote): {restore}")
    if path.stat().st_mode & 0o777 & ~PRIVATE_FILE_MODE:
        path.chmod(PRIVATE_FILE_MODE)
    register_secret(text.decode())
    return text


def last4(key: str) -> str:
    """What may be shown of a key: its last four characters."""
    return key[-4:]
