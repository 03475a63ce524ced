"""Secrets at rest (Fernet, with key rotation) and one-way token hashes."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr


class CredentialCipher:
    """Encrypts with the newest key, decrypts with any; ``rotate`` re-encrypts under the newest."""

    def __init__(self, keys: list[SecretStr]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(key.get_secret_value().encode()) for key in keys])

    def encrypt_json(self, value: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())

    def decrypt_json(self, token: bytes) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise ValueError("credentials cannot be decrypted with the configured keys") from exc
        return loaded

    def rotate(self, token: bytes) -> bytes:
        return self._fernet.rotate(token)


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """High-entropy random tokens need no slow hash: SHA-256 is a lookup key that leaks nothing useful."""
    return hashlib.sha256(token.encode()).hexdigest()
