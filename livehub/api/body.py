"""Reading requests: JSON bodies (size-limited, never a 500 on garbage), query strings, bearer
tokens. Every refusal is a :class:`BadRequest` or :class:`PayloadTooLarge` that the error
middleware renders in the one error shape."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from marshmallow import ValidationError

from livehub import keys
from livehub.api.middlewares import BadRequest, BodyTimeout, PayloadTooLarge, UnsupportedMediaType


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_json(request: web.Request, *, strict_content_type: bool = True) -> Any:
    """The request body as JSON.

    400 when it is empty, malformed or cannot be decoded (bad chunking or Content-Encoding),
    413 when it is larger than the app's ``client_max_size`` (refused from ``Content-Length``
    before reading when the client announces it), 408 when it has not arrived within
    ``LIVEHUB_BODY_TIMEOUT`` seconds (the connection is closed), 415 when
    ``strict_content_type`` and the Content-Type is not JSON. SRS callbacks pass
    ``strict_content_type=False``: SRS always sends ``application/json``, and refusing a
    publish over a header would help nobody.
    """
    if strict_content_type and not _is_json(request.content_type):
        raise UnsupportedMediaType(request.headers.get("Content-Type"))
    limit = request.client_max_size
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(limit)
    timeout = request.app[keys.config].body_timeout
    try:
        # at most 16 KiB: a real client sends it at once; one that trickles or never comes
        # would hold the connection and this handler for good
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        request.content.feed_eof()  # nothing more is read from it: answer, then close
        raise BodyTimeout(timeout) from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(limit) from None
    except web.RequestPayloadError as exc:
        # the stream is broken (bad chunking, undecodable Content-Encoding): end it here so
        # aiohttp does not try to drain it after the answer, and close the connection
        request.content.feed_eof()
        raise BadRequest(
            "invalid_body", f"Request body could not be read: {exc}", close_connection=True
        ) from None
    except ConnectionResetError:
        # the client went away mid-body: nobody will read this answer, and it is no server fault
        raise BadRequest("incomplete_body", "The request body was cut short") from None
    if not raw.strip():
        raise BadRequest("invalid_json", "Request body must be a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("invalid_json", f"Malformed JSON: {exc}") from None


def query_params(request: web.Request) -> dict[str, str]:
    """The query string as a plain dict; a parameter given more than once is a 400 naming it."""
    repeated = sorted({key for key in request.query if len(request.query.getall(key)) > 1})
    if repeated:
        raise ValidationError({key: ["Given more than once."] for key in repeated})
    return dict(request.query)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
