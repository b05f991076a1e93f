"""Player counts in this process's memory: the embedded mode's :class:`PlayerCounts`."""

from __future__ import annotations


class MemoryPlayers:
    """:class:`PlayerCounts` in this process's memory (embedded mode)."""

    def __init__(self) -> None:
        self._players: dict[str, set[str]] = {}
        self._room_of: dict[str, str] = {}

    async def add(self, room_id: str, client_id: str) -> bool:
        players = self._players.setdefault(room_id, set())
        if client_id in players:
            return False
        await self.remove(client_id)
        players = self._players.setdefault(room_id, set())
        players.add(client_id)
        self._room_of[client_id] = room_id
        return True

    async def remove(self, client_id: str) -> str | None:
        room_id = self._room_of.pop(client_id, None)
        if room_id is not None:
            players = self._players.get(room_id)
            if players is not None:
                players.discard(client_id)
                if not players:
                    del self._players[room_id]
        return room_id

    async def clients(self) -> dict[str, str]:
        return dict(self._room_of)

    def count(self, room_id: str) -> int:
        return len(self._players.get(room_id, ()))
