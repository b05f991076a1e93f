"""Domain errors. Each carries a stable snake_case ``code``; the API maps them to statuses."""

from __future__ import annotations

from typing import Any


class LivehubError(Exception):
    code = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class RoomNotFound(LivehubError):
    code = "room_not_found"

    def __init__(self, room_id: str) -> None:
        super().__init__("Room not found", details={"roomId": room_id})


class Unauthorized(LivehubError):
    """No credentials were presented."""

    code = "unauthorized"


class Forbidden(LivehubError):
    """Credentials were presented but do not grant this action."""

    code = "forbidden"


class RateLimited(LivehubError):
    """Too many requests from one client; ``retry_after`` is in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retryAfter": retry_after})
        self.retry_after = retry_after


class TooManyConnections(RateLimited):
    """An address holds as many signaling connections as it may (HTTP 429 before the
    WebSocket handshake)."""

    code = "too_many_connections"

    def __init__(self, limit: int, *, retry_after: int) -> None:
        super().__init__(
            f"Too many connections from this address (at most {limit}): retry in {retry_after} s",
            retry_after=retry_after,
        )
        self.details = {"retryAfter": retry_after, "maxConnections": limit}


class TooManyRooms(LivehubError):
    """The service holds as many open (not ended) rooms as it may (LIVEHUB_MAX_OPEN_ROOMS):
    a capacity limit of the whole service, not of one client (HTTP 503 with Retry-After)."""

    code = "too_many_rooms"

    def __init__(self, limit: int, *, retry_after: int) -> None:
        super().__init__(
            f"Too many open rooms (at most {limit}): retry later",
            details={"maxOpenRooms": limit, "retryAfter": retry_after},
        )
        self.retry_after = retry_after


class Conflict(LivehubError):
    """A change kept losing the race to other writers of the same room."""

    code = "conflict"


class RoomEnded(LivehubError):
    """The room has ended: nothing more can happen in it (join, chat, close)."""

    code = "room_ended"

    def __init__(self, room_id: str) -> None:
        super().__init__("Room has ended", details={"roomId": room_id})


class HookRejected(LivehubError):
    """An SRS callback is refused (on_publish/on_play); SRS then drops the client."""

    code = "hook_rejected"
