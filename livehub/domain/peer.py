"""One signaling connection (:class:`Peer`) and where its messages go (:class:`Sink`).

A peer knows its rooms, its name and role in each, its rate limits and its own queue of frames
(direct sends, and its share of big rooms' backlogs moved there: :mod:`livehub.domain.delivery`).
The hub (:mod:`livehub.domain.hub`) keeps which peers are in which room.
"""

from __future__ import annotations

import secrets
from collections.abc import KeysView
from typing import Protocol

from livehub.domain.ratelimit import UNLIMITED, ConnectionLimiter


class Sink(Protocol):
    """Where a peer's encoded messages go: its WebSocket, adapted by the API layer.

    ``write`` gets one batch per flush, one encoded message per WebSocket frame, in order; it must
    not block (the API queues them), and the list may be shared between peers and must not be
    modified. It returns what is written but not yet taken by the peer, in bytes, this batch
    included (one call per batch, not two: the relay path pays it per message). ``abort``
    closes the connection with ``code`` after what is already written."""

    def write(self, frames: list[bytes]) -> int: ...

    def abort(self, code: int, reason: str) -> None: ...


class Peer:
    """One signaling connection."""

    __slots__ = (
        "address",
        "closed",
        "id",
        "limiter",
        "names",
        "out",
        "out_bytes",
        "roles",
        "sink",
    )

    def __init__(
        self,
        sink: Sink,
        limiter: ConnectionLimiter = UNLIMITED,
        peer_id: str | None = None,
        address: str = "",
    ) -> None:
        self.id = peer_id or secrets.token_urlsafe(9)
        self.sink = sink
        #: the client's address key (:func:`livehub.domain.addresses.address_key`; kick bans),
        #: never shown to other clients
        self.address = address
        #: the connection's rate limits (the protocol's business; the hub never looks)
        self.limiter = limiter
        #: its name and its role in each of its rooms (the hub keeps both)
        self.names: dict[str, str] = {}
        self.roles: dict[str, str] = {}
        #: frames for this peer alone (direct sends, and backlog shares moved here), in order
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.closed = False

    @property
    def rooms(self) -> KeysView[str]:
        """The rooms it is in: the keys of :attr:`roles`, as a member has a role in each (no set
        of its own: a set is a fifth of a kB of each connection's memory)."""
        return self.roles.keys()

    def describe(self, room_id: str) -> dict[str, str]:
        return {
            "peerId": self.id,
            "name": self.names.get(room_id, ""),
            "role": self.roles.get(room_id, "viewer"),
        }
