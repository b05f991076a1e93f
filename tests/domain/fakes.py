"""Test doubles for the signaling domain: a sink that records frames, a hand-cranked loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from livehub.domain.hub import Hub


class FakeSink:
    """Records what the hub writes; ``backlog`` is what each ``write`` reports buffered."""

    def __init__(self, *, backlog: int = 0, fail: bool = False) -> None:
        self.writes: list[list[bytes]] = []
        self.backlog = backlog
        self.fail = fail
        self.aborted: tuple[int, str] | None = None

    def write(self, frames: list[bytes]) -> int:
        if self.fail:
            raise ConnectionResetError("peer went away")
        self.writes.append(list(frames))
        return self.backlog

    def abort(self, code: int, reason: str) -> None:
        if self.aborted is None:
            self.aborted = (code, reason)

    @property
    def frames(self) -> list[bytes]:
        return [frame for batch in self.writes for frame in batch]

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(frame) for frame in self.frames]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in self.messages() if message["type"] == kind]

    def clear(self) -> None:
        self.writes.clear()


class Timer:
    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """``call_soon``/``call_later`` that run only when the test says so."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []
        self.timers: list[Timer] = []

    def call_soon(self, callback: Callable[[], None]) -> object:
        self.soon.append(callback)
        return None

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(delay, callback)
        self.timers.append(timer)
        return timer

    def run_soon(self) -> None:
        while self.soon:
            callbacks, self.soon = self.soon, []
            for callback in callbacks:
                callback()

    def run_timers(self) -> None:
        """Fire every pending timer (time jumps past all of them), then what they scheduled."""
        self.run_soon()
        while self.timers:
            timers, self.timers = self.timers, []
            for timer in timers:
                if not timer.cancelled:
                    timer.callback()
            self.run_soon()


class CountingEncoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, message: dict[str, Any]) -> bytes:
        self.calls += 1
        return orjson.dumps(message)


def make_hub(
    loop: ManualLoop, *, max_buffer: int = 1024 * 1024, encoder: CountingEncoder | None = None
) -> Hub:
    return Hub(
        encoder or CountingEncoder(),
        loop.call_soon,
        loop.call_later,
        max_buffer=max_buffer,
        count_interval=0.2,
    )
