"""Encryption of stored API keys: AES-256-GCM under a master key, bound to their workspace.

The master key is `SECRET_KEY` when set; otherwise one is generated once into `DATA_DIR/secret.key`
with 0600 permissions. Binding the workspace as associated data means a ciphertext copied onto
another workspace's row fails to decrypt instead of leaking one workspace's key to another.
Every value sealed or opened here, and the generated master secret, is registered with the log
filter (`bot.logs`), so it is masked wherever it is logged later.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.errors import ConfigError
from bot.logs import register_secret

SECRET_FILE_NAME = "secret.key"  # noqa: S105 - a file name, not a secret
_NONCE_BYTES = 12
_VERSION = b"\x01"  # leading byte so the format can change without guessing


def _derive(material: str) -> bytes:
    # SECRET_KEY may be any operator-chosen string; hash it to exactly 32 bytes.
    return hashlib.sha256(b"answerbot-vault-v1:" + material.encode()).digest()


def load_master_key(secret_key: str | None, data_dir: Path) -> bytes:
    """The 32-byte master key: from SECRET_KEY, or from (and if needed into) DATA_DIR."""
    if secret_key:
        return _derive(secret_key)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE_NAME
    try:
        # O_EXCL: two processes starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        material = path.read_text().strip()
        if not material:
            raise ConfigError(f"{path} is empty; restore it or set SECRET_KEY") from None
        register_secret(material)
        return _derive(material)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
    material = path.read_text().strip()
    register_secret(material)
    return _derive(material)


class Vault:
    """Encrypts and decrypts small secrets for one deployment."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._aead = AESGCM(master_key)

    def encrypt(self, plaintext: str, *, workspace: str) -> bytes:
        register_secret(plaintext)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), workspace.encode())
        return _VERSION + nonce + sealed

    def decrypt(self, blob: bytes, *, workspace: str) -> str:
        if not blob.startswith(_VERSION):
            raise ConfigError("stored key has an unknown format")
        nonce = blob[1 : 1 + _NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, blob[1 + _NONCE_BYTES :], workspace.encode())
        except InvalidTag:
            raise ConfigError(
                "a stored API key can't be decrypted: SECRET_KEY or DATA_DIR/secret.key changed"
            ) from None
        register_secret(plain.decode())
        return plain.decode()


def last4(key: str) -> str:
    """What may be shown of a key: its last four characters."""
    return key[-4:]
