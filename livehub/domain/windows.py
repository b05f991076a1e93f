"""Reconnect windows: the local timers that end a room on time when its publisher does not
come back (the stored deadline, ``reconnecting_since``, is the truth; the sweep ends what a
timer missed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class Cancellable(Protocol):
    """What a scheduler returns (an ``asyncio.TimerHandle`` fits)."""

    def cancel(self) -> None: ...


#: runs a coroutine function after a delay in seconds
Scheduler = Callable[[float, Callable[[], Awaitable[None]]], Cancellable]
