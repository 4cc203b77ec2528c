"""Encryption of secrets at rest (channel access tokens)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


def _fernet() -> Fernet:
    key = current_app.config.get("TOKEN_ENCRYPTION_KEY")
    if not key:
        # Derived, with a purpose label, so the session key itself never encrypts data.
        digest = hashlib.sha256(
            b"helpdesk-token-encryption:" + current_app.config["SECRET_KEY"].encode()
        ).digest()
        key = base64.urlsafe_b64encode(digest)
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        digest = hashlib.sha256(str(key).encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("the stored secret cannot be read with this key") from exc
