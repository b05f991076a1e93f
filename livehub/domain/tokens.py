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
    """12 characters of ``[a-z0-9]`` from one read of 128 random bits (``secrets.choice`` per
    character reads the system's randomness 12 times); the bias of taking 12 base-36 digits of a
    128-bit number is below 1e-19."""
    number = int.from_bytes(secrets.token_bytes(16), "big")
    chars = []
    for _ in range(12):
        number, digit = divmod(number, 36)
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)
