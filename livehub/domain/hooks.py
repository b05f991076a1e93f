"""SRS's HTTP callbacks (on_publish, on_unpublish, on_play, on_stop): what a callback did
(:class:`HookResult`), the publisher SRS is asked to drop (:class:`Publisher`) and what the
decisions need to know of the SRS origins and of private rooms' viewers.

The lifecycle rules the callbacks apply are :mod:`livehub.domain.lifecycle`'s; the room service
(:class:`livehub.domain.service.RoomService`) answers the callbacks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from livehub.domain.room import Room

#: why a callback for a stream no room has is refused (the stage then looks for a guest)
NO_ROOM = "no room has this stream"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Publisher:
    """A publisher to kick: its SRS client id and the SRS that accepted it (``server_id``
    from the hook, ``origin`` the configured SRS it was matched to; either may be unknown)."""

    client_id: str
    server_id: str | None = None
    origin: str | None = None


#: asks SRS to drop a publisher (in the background: it must not block)
Kicker = Callable[[Publisher], None]
#: the name of the configured SRS origin a hook's ``server_id`` belongs to, if known
OriginOf = Callable[[str | None], str | None]
#: whether the SRS origin of a publisher (``server_id``, origin name) is known to be down now
OriginLost = Callable[[str | None, str | None], bool]
#: whether an on_play's ``param`` carries a viewer token valid for the (private) room
PlayAllowed = Callable[[Room, str], bool]


def no_origin(server_id: str | None) -> str | None:
    return None


def never_lost(server_id: str | None, origin: str | None) -> bool:
    return False


@dataclasses.dataclass(frozen=True, kw_only=True)
class HookResult:
    """What a callback did. ``allowed`` is SRS's answer; ``outcome`` is for metrics and logs."""

    allowed: bool
    outcome: str  # accepted | rejected | ignored
    reason: str = ""
    room: Room | None = None
    srs_restarted: bool = False
