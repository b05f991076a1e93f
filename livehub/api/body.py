"""Reading request bodies: JSON only, size-limited, never a 500 on garbage."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from livehub.api.middlewares import BadRequest


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; 400 when it is empty or malformed, 413 when too large."""
    raw = await request.read()  # client_max_size raises HTTPRequestEntityTooLarge
    if not raw.strip():
        raise BadRequest("invalid_json", "Request body must be a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("invalid_json", f"Malformed JSON: {exc}") from None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
