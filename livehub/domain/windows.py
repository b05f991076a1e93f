"""Reconnect windows: the local timers that end a room on time when its publisher does not
come back (the stored deadline, ``reconnecting_since``, is the truth; the sweep ends what a
timer missed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from livehub.domain.room import Room, RoomStatus


class Cancellable(Protocol):
    """What a scheduler returns (an ``asyncio.TimerHandle`` fits)."""

    def cancel(self) -> None: ...


#: runs a coroutine function after a delay in seconds
Scheduler = Callable[[float, Callable[[], Awaitable[None]]], Cancellable]


class ReconnectWindows:
    """The timers of the reconnect windows this process knows are open: room id → timer that
    calls ``expire(room_id)`` at the room's deadline (``reconnecting_since`` + the window)."""

    def __init__(
        self,
        scheduler: Scheduler | None,
        window_ms: int,
        expire: Callable[[str], Awaitable[object]],
        clock: Callable[[], int],
    ) -> None:
        """Without a ``scheduler`` no timer is armed (the sweep ends what is due)."""
        self._scheduler = scheduler
        self._window_ms = window_ms
        self._expire = expire
        self._clock = clock
        self._timers: dict[str, Cancellable] = {}

    def follow(self, room: Room) -> None:
        """The room as just written: a timer while its window is open, none otherwise."""
        if room.reconnecting_since is not None and room.status is RoomStatus.LIVE:
            self.arm(room)
        else:
            self.disarm(room.id)

    def arm(self, room: Room) -> None:
        self.disarm(room.id)
        if self._scheduler is None or room.reconnecting_since is None:
            return
        due = room.reconnecting_since + self._window_ms - self._clock()
        room_id = room.id

        async def fire() -> None:
            self._timers.pop(room_id, None)
            await self._expire(room_id)

        self._timers[room.id] = self._scheduler(max(due, 0) / 1000, fire)

    def disarm(self, room_id: str) -> None:
        timer = self._timers.pop(room_id, None)
        if timer is not None:
            timer.cancel()

    def shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
