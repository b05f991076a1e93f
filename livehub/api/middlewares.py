"""One JSON error shape for every REST failure: ``{"error", "code", "details"}``.

Errors are rendered here from a type → status table; handlers just raise.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Final

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Handler
from marshmallow import ValidationError

from livehub.api.jsonio import json_response
from livehub.config import printable, redact_path
from livehub.domain.errors import (
    Conflict,
    Forbidden,
    LivehubError,
    RateLimited,
    RoomEnded,
    RoomNotFound,
    TooManyRooms,
    Unauthorized,
)
from livehub.domain.recordings import RecordingFileKept, RecordingNotFound
from livehub.domain.stage import NotOnStage
from livehub.domain.store import StoreUnavailable
from livehub.webhooks.queue import DeliveryNotFailed, DeliveryNotFound, WebhooksDisabled

log = logging.getLogger(__name__)


class BadRequest(LivehubError):
    """Malformed input that never reached a schema (not JSON, wrong content)."""

    code = "bad_request"

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        close_connection: bool = False,
    ) -> None:
        super().__init__(message, details=details)
        self.code = code
        #: the request stream is unusable (undecodable body): answer, then close the connection
        self.close_connection = close_connection


class BodyTimeout(BadRequest):
    """The request's body did not arrive in time (408): the connection is closed. A body that
    never comes would otherwise hold its connection and handler for good (aiohttp's keep-alive
    timer stops once the headers are in)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            "body_timeout",
            f"The request body did not arrive within {seconds:g} s",
            close_connection=True,
        )


class PayloadTooLarge(LivehubError):
    code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body is larger than {limit} bytes", details={"maxBytes": limit})


class UnsupportedMediaType(LivehubError):
    code = "unsupported_media_type"

    def __init__(self, given: str | None) -> None:
        super().__init__(
            "Content-Type must be application/json",
            details={"contentType": given[:100] if given is not None else None},
        )


STATUS: dict[type[LivehubError], int] = {
    BodyTimeout: 408,
    BadRequest: 400,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Unauthorized: 401,
    Forbidden: 403,
    RoomNotFound: 404,
    Conflict: 409,
    RateLimited: 429,
    TooManyRooms: 503,
    StoreUnavailable: 503,
    RoomEnded: 409,
    RecordingNotFound: 404,
    RecordingFileKept: 503,
    NotOnStage: 404,
    # webhooks
    DeliveryNotFound: 404,
    DeliveryNotFailed: 409,
    WebhooksDisabled: 404,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    return json_response({"error": message, "code": code, "details": details}, status=status)


def _status(exc: LivehubError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


#: the routes whose WebSocket upgrades answer their own errors, up to the handshake (after it
#: none can be answered): :func:`error_middleware` stays out of their connections
UPGRADE_ROUTES: Final = frozenset({"ws", "index"})


@web.middleware
def error_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Every error in the one JSON error shape (:func:`render_error`).

    A WebSocket upgrade to :data:`UPGRADE_ROUTES` answers its own errors until its handshake,
    and gets its handler's coroutine as it is: a middleware that awaits the handler is one more
    frame that each of the connection's messages passes through, for as long as it is open.
    """
    if request.match_info.route.name in UPGRADE_ROUTES and is_upgrade(request):
        try:
            return handler(request)
        except Exception as exc:  # a middleware inside this one refused it (a listener's 404)
            return _answered(render_error(request, exc))
    return _rendering_errors(request, handler)


async def _rendering_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Exception as exc:
        response = render_error(request, exc)
    if not _body_read_or_small(request) and not response.prepared:
        # what is left is not read: answer, then close (see _body_read_or_small)
        request.content.feed_eof()
        response.force_close()
    return response


def _body_read_or_small(request: web.Request) -> bool:
    """Whether the request's body was read to its end, or what is left of it is no larger than
    the app reads (``client_max_size``). After the answer aiohttp reads and drops a body the
    handler left unread, for up to 10 s (its lingering close) and as fast as the client sends:
    one request announcing ``Content-Length: 1000000000`` (a 413, or a GET that never reads its
    body) had the server swallow a gigabyte. A larger body, or one of unknown length (chunked),
    closes the connection with the answer instead; a small one is drained (keep-alive)."""
    if not request.body_exists or request.content.is_eof():
        return True
    declared = request.content_length
    return declared is not None and declared <= request.client_max_size


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """The routes' ``Expect: 100-continue`` handler: a body announced larger than the app reads
    is refused (413, the connection closed) before the client sends it, where aiohttp's own
    handler invited every body with ``100 Continue`` and the 413 came once it was on its way.
    Any other gets ``100 Continue`` as from aiohttp's handler (417 for an expectation other than
    ``100-continue``). An answer returned here skips the middlewares: it is rendered in the one
    error shape here."""
    limit = request.client_max_size
    declared = request.content_length
    refusal: Exception | None = None
    if declared is not None and declared > limit:
        refusal = PayloadTooLarge(limit)
    elif request.headers.get("Expect", "").lower() != "100-continue":
        refusal = web.HTTPExpectationFailed(text="Only Expect: 100-continue is supported")
    if refusal is not None:
        request.content.feed_eof()
        response = render_error(request, refusal)
        response.force_close()
        return response
    if request.version == HttpVersion11:  # HTTP/1.0 has no 100 Continue
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not begun (as aiohttp's does)
    return None


async def _answered(response: web.StreamResponse) -> web.StreamResponse:
    return response


def is_upgrade(request: web.Request) -> bool:
    """Whether ``request`` asks for a WebSocket."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


def render_error(request: web.Request, exc: Exception) -> web.StreamResponse:
    """``exc``, raised while answering ``request``, as the one error shape; an HTTP exception
    that is not an error (a redirect) or has no body is raised again, for aiohttp to send."""
    if isinstance(exc, ValidationError):
        details = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        fields = ", ".join(sorted(str(key) for key in details))
        return error_response(400, "validation_error", f"Invalid input: {fields}", details)
    if isinstance(exc, LivehubError):
        response = error_response(_status(exc), exc.code, exc.message, exc.details)
        if isinstance(exc, BadRequest) and exc.close_connection:
            response.force_close()
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, RateLimited | TooManyRooms):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400 or exc.empty_body:
            raise exc
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        # aiohttp's default text is "<status>: <reason>"; a custom one (CORS) says more
        text = exc.text or ""
        message = exc.reason if not text or text.startswith(f"{exc.status}: ") else text
        response = error_response(exc.status, code, message)
        for name in ("Allow", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    if isinstance(exc, ConnectionResetError) and _client_gone(request):
        # the client closed its connection before the answer went out (a WebSocket
        # handshake cut short): nothing went wrong here, and a traceback for each would
        # let anyone fill the log by opening and dropping connections
        log.debug("client went away during %s %s", request.method, _loggable(request))
        return error_response(499, "client_closed_request", "Client closed the request")
    log.error("unhandled error in %s %s", request.method, _loggable(request), exc_info=exc)
    return error_response(500, "internal_error", "Internal server error")


def _loggable(request: web.Request) -> str:
    """The request's path as a log line may show it: as the access log shows it (the signed
    heartbeat's secret masked, what is not printable escaped), without the query."""
    return printable(redact_path(request.path))


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
