"""The hub port (:class:`RoomHub`): what the signaling protocol needs from a hub, and its
counters (:class:`HubStats`).

Adapters: :class:`livehub.domain.hub.Hub` (one process, the embedded mode's own) and
:class:`livehub.domain.cluster_hub.ClusterHub` (on the bus between nodes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from livehub.domain.peer import Peer
from livehub.domain.presence import PresenceListener


class RoomHub(Protocol):
    """What the signaling protocol needs from a hub: the port a cluster adapter implements.

    :class:`~livehub.domain.hub.Hub` is the in-process one. The cluster one
    (``livehub/domain/cluster_hub.py``, on the Redis bus) holds the local connections in a
    :class:`~livehub.domain.hub.Hub` and carries what crosses processes over
    the bus: broadcasts (encoded once, delivered by each process to its own members, the sender
    skipped), sends to a peer id that lives elsewhere, and the member registry behind ``count``,
    ``describe_*`` and ``page_members``. Membership changes stay synchronous; an adapter publishes
    them after the fact. The members of a room are described as ``{"peerId", "name", "role"}``.
    """

    @property
    def stats(self) -> HubStats: ...

    @property
    def rooms(self) -> Mapping[str, Mapping[str, Peer]]:
        """Rooms with members connected to this process, and those members."""
        ...

    @property
    def peers(self) -> Mapping[str, Peer]:
        """The connections of this process."""
        ...

    def connect(self, peer: Peer) -> None: ...

    def disconnect(self, peer: Peer) -> list[str]:
        """Leave every room; the rooms it was in."""
        ...

    def join(self, peer: Peer, room_id: str, name: str, role: str) -> bool:
        """False if it was a member already (counted once)."""
        ...

    def leave(self, peer: Peer, room_id: str) -> bool: ...

    def is_member(self, peer: Peer, room_id: str) -> bool: ...

    def count(self, room_id: str) -> int:
        """Exact number of members (distinct connections) of the room."""
        ...

    def member(self, room_id: str, peer_id: str) -> Peer | None:
        """A member connected to this process."""
        ...

    def describe_members(self, room_id: str) -> list[dict[str, str]]: ...

    def describe_hosts(self, room_id: str) -> list[dict[str, str]]: ...

    def page_members(self, room_id: str, limit: int, offset: int) -> list[dict[str, str]]: ...

    def send(self, peer: Peer, message: dict[str, Any]) -> None:
        """To one local connection."""
        ...

    def send_to(self, room_id: str, peer_id: str, message: dict[str, Any]) -> bool:
        """To the member ``peer_id`` of the room, wherever it is; False if it is not one."""
        ...

    def broadcast(self, room_id: str, message: dict[str, Any], exclude: Peer | None = None) -> int:
        """To every member but ``exclude``, encoded once; the number of recipients."""
        ...

    def broadcast_local(
        self, room_id: str, message: dict[str, Any], exclude: Peer | None = None
    ) -> int:
        """To the members connected to this process only (what every node decides for its
        own members: presence modes)."""
        ...

    def announce_room(self, room_id: str, make: Callable[[], dict[str, Any]]) -> None:
        """A room-changed message (``make()``) to every member, wherever it is. Each process
        builds what its members get (its own viewer count)."""
        ...

    def hears(self, room_id: str) -> bool:
        """Whether every change of the room reaches this process (its own, and other
        processes' notices): always in one process; in a cluster, while this node has members
        there. Signaling keeps what it read of a room only while it hears of it."""
        ...

    def touch_room(self, room_id: str) -> None:
        """The room was written without a message to its members (the stage, moderation: their
        callers say what changed): other processes forget what they knew of it. Nothing to do
        in one process."""
        ...

    async def send_elsewhere(self, room_id: str, peer_id: str, message: dict[str, Any]) -> bool:
        """After :meth:`send_to` said no: send to ``peer_id`` if the cluster registry knows it
        as a member of the room on another node (one that joined a moment ago, before this
        process heard of it); False if it is a member nowhere. Always False in one process."""
        ...

    async def kick_elsewhere(self, room_id: str, peer_id: str, by: str) -> bool:
        """Ask the node of ``peer_id``, a member of the room on another node, to kick it (it
        leaves, hears ``kicked`` and is announced there); False if it is a member nowhere
        else. Always False in one process."""
        ...

    async def load(self, room_id: str) -> None:
        """Bring the room's members from every process up to date (before a join, or a page
        of members); nothing to do in one process."""
        ...

    async def prefetch(self, room_ids: list[str]) -> None:
        """Read the rooms' cluster-wide counts before views are rendered; nothing to do in one
        process."""
        ...

    #: False when :meth:`backed_up` is always False (one process, no bus): signaling then
    #: skips the call, made per message otherwise
    can_back_up: bool

    def backed_up(self) -> bool:
        """Whether producers must wait in :meth:`writable` before their next message (the bus
        to other nodes is backed up); never in one process. A cheap check, made per message."""
        ...

    async def writable(self) -> None:
        """Return when the hub takes more messages (a producer, a connection's reader, waits
        here while the bus to other nodes is backed up); at once in one process."""
        ...

    def listen(self, listener: PresenceListener) -> None:
        """Who hears what changes elsewhere (members on other nodes, lost nodes)."""
        ...

    def flush(self) -> None:
        """Hand what is queued to the connections now."""
        ...


class HubStats:
    __slots__ = ("connections", "dropped", "relayed", "slow_disconnects")

    def __init__(self) -> None:
        self.connections = 0
        self.relayed = 0
        self.dropped = 0
        self.slow_disconnects = 0
