"""Room ids and tokens. Owner tokens and API keys are kept only as SHA-256 hashes.

Tokens from clients are any ``str``: aiohttp hands an ``Authorization`` header that is not UTF-8
over with surrogates (``surrogateescape``). They are hashed and compared as :func:`token_bytes`,
which takes every ``str``, so a strange token is a wrong token, never a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_ID_ALPHABET = string.ascii_lowercase + string.digits


def token_bytes(token: str) -> bytes:
    """A token's UTF-8 bytes; a surrogate (from bytes that were no UTF-8) is kept as its own
    bytes (``surrogatepass``) rather than raising: such a token matches no real one."""
    return token.encode("utf-8", "surrogatepass")


def same_token(given: str, expected: str) -> bool:
    """Whether ``given`` is ``expected``, in constant time, for any two ``str``
    (``hmac.compare_digest`` refuses a ``str`` that is not ASCII)."""
    return hmac.compare_digest(token_bytes(given), token_bytes(expected))


def hash_token(token: str) -> str:
    """Owner tokens are stored hashed: a database leak does not hand them out."""
    return hashlib.sha256(token_bytes(token)).hexdigest()


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
