"""The bus between livehub nodes: the port the signaling hub talks to in cluster mode.

Model: every node keeps its own WebSocket connections in its hub. The bus carries what must
reach the *other* nodes: room broadcasts (frames encoded once by the sender's hub, delivered by
each recipient node's hub to its local members), direct sends to a peer connected elsewhere, and
presence (which peer is in which room on which node, so ``viewerCount`` is exact cluster-wide).

Presence travels as deltas: each join or leave reaches the other nodes with members in the room
as a :class:`PresenceDelta` carrying the sender's sequence number and the one of its previous
presence message in that room, so a receiver applies it to its view of the room in O(1) and
detects a missed one (``prev`` is not the last it has from that node). A :class:`Snapshot`
(:meth:`Bus.snapshot`) is a full read: the members and each node's latest seq, atomically; a
receiver reads one when a room becomes local, on a gap, on a new bus session and on a
:meth:`BusHandler.presence_changed` notice (a node's whole presence was rewritten: rebuilt,
reaped or closed).

The hub's membership changes stay synchronous: :meth:`Bus.join`, :meth:`Bus.leave`,
:meth:`Bus.broadcast` and :meth:`Bus.send` only enqueue, in call order, and never block; one
writer sends them to the other nodes in that order, so each recipient keeps the sender's order.
The sender's own node delivers locally and the bus never echoes a message back to it.
:meth:`Bus.flush` waits until everything enqueued so far was handed to the engine.

What comes in from other nodes reaches the hub through the :class:`BusHandler` it registers.
Adapters: ``livehub.adapters.memory.bus.LocalBus`` (one process, nothing to carry) and
``livehub.adapters.redis.bus.RedisBus`` (Redis pub/sub and hashes).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """One peer's presence in one room, as the cluster sees it."""

    room_id: str
    peer_id: str
    node_id: str
    name: str
    role: str


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceDelta:
    """One join (``joined``, with the member's ``name`` and ``role``) or leave on another node.

    ``seq`` comes from one counter per node, increasing over all its rooms; ``prev`` is the seq
    of the node's previous presence message in this room, 0 when the node had no member there
    before this message (every earlier member of it in the room is gone)."""

    room_id: str
    node_id: str
    seq: int
    prev: int
    peer_id: str
    joined: bool
    name: str = ""
    role: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """A room's presence read at once: its members on live nodes, and for each such node the
    seq of its latest presence message in the room (the deltas it includes)."""

    members: list[Member]
    seqs: dict[str, int]


class BusHandler(Protocol):
    """What a node's hub does with traffic from other nodes. Calls are synchronous and must not
    raise (an exception is logged and the message dropped)."""

    def deliver_room(self, room_id: str, frame: bytes, exclude: str | None) -> None:
        """A broadcast from another node: hand ``frame`` to every local member of the room
        except the peer ``exclude``."""

    def deliver_peer(self, peer_id: str, frame: bytes, room_id: str | None) -> None:
        """A direct send from another node to the local peer ``peer_id``: dropped if it is no
        longer a member of ``room_id`` (it left after the sender's view of the room was
        written); ``None``: whatever its rooms."""

    def presence_delta(self, delta: PresenceDelta) -> None:
        """A member joined or left the room on another node (in that node's order)."""

    def presence_changed(self, room_id: str) -> None:
        """Another node's whole presence in the room was rewritten (rebuilt, reaped, closed):
        read the room again."""

    def members_lost(self, members: list[Member]) -> None:
        """A node died and this node reaped its presence: announce ``peer-left`` for each
        member (cluster-wide, through :meth:`Bus.broadcast`). Only one node gets this call."""

    def members_returned(self, members: list[Member]) -> None:
        """This node was reaped as dead by another (it was paused or cut off past the death
        timeout, and its members were announced gone) and has written its presence back:
        announce ``members``, its own, again (cluster-wide, through :meth:`Bus.broadcast`)."""

    def room_changed(self, room_id: str, notice: bytes) -> None:
        """Another node changed the room (status, lifecycle): ``notice`` is what it sent with
        :meth:`Bus.notify`; tell this node's members."""

    def kick_peer(self, room_id: str, peer_id: str, by: str) -> None:
        """A host on another node kicked the local peer ``peer_id`` out of the room (sent with
        :meth:`Bus.kick`): remove it and announce it as a local kick would."""


class Bus(Protocol):
    node_id: str
    #: sessions with the other nodes so far (a new one follows an outage)
    sessions: int

    @property
    def healthy(self) -> bool:
        """Whether other nodes are reachable (for ``/readyz``); local serving goes on either way."""

    def set_handler(self, handler: BusHandler) -> None: ...

    def join(self, room_id: str, peer_id: str, name: str, role: str) -> None: ...

    def leave(self, room_id: str, peer_id: str) -> None: ...

    def broadcast(self, room_id: str, frame: bytes, exclude: str | None = None) -> None: ...

    def send(
        self, peer_id: str, frame: bytes, node_id: str | None = None, room_id: str | None = None
    ) -> None:
        """A frame for ``peer_id``, connected on ``node_id`` if the caller knows it (then no
        look-up), else wherever the registry has it; for it only while it is a member of
        ``room_id`` when one is named (:meth:`BusHandler.deliver_peer`)."""

    def notify(self, room_id: str, notice: bytes) -> None:
        """A room-changed notice for the nodes with members in the room (not this one)."""

    def kick(self, room_id: str, peer_id: str, by: str) -> None:
        """Ask the node of ``peer_id`` to remove it from the room (a kick by the host ``by``)."""

    async def member(self, room_id: str, peer_id: str) -> Member | None:
        """The peer's membership of the room on a live node, read from the registry (None if
        it is not a member anywhere)."""

    async def flush(self) -> None: ...

    def backed_up(self) -> bool:
        """Whether its queue is full: producers are to wait in :meth:`writable`."""

    async def writable(self) -> None:
        """Return when the bus takes more: producers wait here while its queue is full."""

    async def count(self, room_id: str) -> int:
        """Members of the room on every live node."""

    async def counts(self, room_ids: list[str]) -> dict[str, int]:
        """:meth:`count` of several rooms in one round trip."""

    async def members(self, room_id: str) -> list[Member]:
        """Members of the room on every live node."""

    async def snapshot(self, room_id: str) -> Snapshot:
        """:meth:`members` with each node's latest presence seq in the room, read at once."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...
