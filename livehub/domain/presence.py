"""Presence that other processes change: what the signaling protocol hears of other nodes.

Only a cluster hub (:mod:`livehub.domain.cluster_hub`) calls a :class:`PresenceListener`; in
one process every membership change is the protocol's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from livehub.domain.peer import Peer


class PresenceListener(Protocol):
    """The protocol's side of presence that other processes change (cluster mode only)."""

    def presence_changed(self, room_id: str, count: int) -> None:
        """Members came or went on other nodes: ``count`` is the room's count now."""

    def members_lost(self, room_id: str, members: list[tuple[str, str]], count: int) -> None:
        """A dead node's members of the room (peer id, role), reaped by this process alone;
        ``count`` is the room's count before they went."""

    def members_returned(self, room_id: str, members: list[Peer], count: int) -> None:
        """This node's ``members`` of the room, announced gone by another node that took this
        one for dead, are back in the cluster's presence; ``count`` is the room's count."""

    def kick_requested(self, room_id: str, peer_id: str, by: str) -> None:
        """The host ``by`` on another node kicked ``peer_id``, a member on this node."""

    def room_changed(self, room_id: str) -> None:
        """Another node changed the room (its ``room-status`` notice came)."""

    async def room_heard(self, room_id: str) -> None:
        """This node hears the room's changes from now on (it has members there, and its
        subscription to the room's notices is confirmed): a change made before that, after
        its members read the room, was not heard."""

    def rooms_unknown(self) -> None:
        """The bus's session to the other nodes ended or began again: notices of room changes
        may have been missed."""
