"""The bus of one process: nothing to carry, presence is the process's own (no other node sends
deltas, and a snapshot has no seqs)."""

from __future__ import annotations

from livehub.domain.bus import BusHandler, Member, Snapshot


class LocalBus:
    """The embedded mode's bus: one node, so nothing leaves the process. Presence is this
    node's own membership, so counts and member lists are still exact."""

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id
        self.sessions = 1
        self._rooms: dict[str, dict[str, Member]] = {}

    @property
    def healthy(self) -> bool:
        return True

    def set_handler(self, handler: BusHandler) -> None:
        pass

    def join(self, room_id: str, peer_id: str, name: str, role: str) -> None:
        self._rooms.setdefault(room_id, {})[peer_id] = Member(
            room_id, peer_id, self.node_id, name, role
        )

    def leave(self, room_id: str, peer_id: str) -> None:
        members = self._rooms.get(room_id)
        if members is not None:
            members.pop(peer_id, None)
            if not members:
                del self._rooms[room_id]

    def broadcast(self, room_id: str, frame: bytes, exclude: str | None = None) -> None:
        pass

    def send(
        self, peer_id: str, frame: bytes, node_id: str | None = None, room_id: str | None = None
    ) -> None:
        pass

    def notify(self, room_id: str, notice: bytes) -> None:
        pass

    def kick(self, room_id: str, peer_id: str, by: str) -> None:
        pass

    async def member(self, room_id: str, peer_id: str) -> Member | None:
        return self._rooms.get(room_id, {}).get(peer_id)

    async def flush(self) -> None:
        pass

    def backed_up(self) -> bool:
        return False

    async def writable(self) -> None:
        pass

    async def count(self, room_id: str) -> int:
        return len(self._rooms.get(room_id, ()))

    async def counts(self, room_ids: list[str]) -> dict[str, int]:
        return {room_id: len(self._rooms.get(room_id, ())) for room_id in room_ids}

    async def members(self, room_id: str) -> list[Member]:
        return list(self._rooms.get(room_id, {}).values())

    async def snapshot(self, room_id: str) -> Snapshot:
        return Snapshot(await self.members(room_id), {})

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._rooms.clear()
