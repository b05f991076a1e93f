"""Room ids and tokens. Owner tokens and API keys are kept only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import string

_ID_ALPHABET = string.ascii_lowercase + string.digits


def hash_token(token: str) -> str:
    """Owner tokens are stored hashed: a database leak does not hand them out."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A URL-safe random token of 256 bits."""
    return secrets.token_urlsafe(32)


def new_room_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
