"""Helpers the tests share (no test module imports another): the one polling helper
(:func:`eventually`), reading metrics and rooms over HTTP, rooms and events for the store
suites."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from livehub.domain.room import EventType, Room, RoomEvent
from livehub.domain.service import RoomService
from livehub.domain.srs_params import HookEvent
from livehub.domain.tokens import hash_token
from tests.conftest import Client


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], within: float = 10.0, every: float = 0.01
) -> Any:
    """Wait (bounded by ``within`` seconds) until ``check()`` is truthy, and return what it
    returned: for effects of background tasks, other processes, other nodes. ``check`` may be a
    coroutine function. Fails the test after ``within`` seconds. The one polling helper of the
    suite (no wall-clock assertions: the bound is the only time it knows)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


async def scrape(client: Client, name: str, **labels: str) -> float:
    """One sample from ``/metrics``, parsed as Prometheus text."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


async def raw_request(
    client: Client, method: str, target: str, authorization: bytes | None = None
) -> tuple[int, Any]:
    """``method target`` sent as bytes on a socket of its own, with ``Authorization:
    <authorization>`` as given (aiohttp's client sends no header that is not UTF-8); the status
    and the reply (parsed when it is JSON, else its bytes)."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = f"{method} {target} HTTP/1.1\r\nHost: livehub\r\nConnection: close\r\n".encode()
        if authorization is not None:
            head += b"Authorization: " + authorization + b"\r\n"
        writer.write(head + b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if b"application/json" in head.lower() else body


async def created(client: Client, title: str = "Test room") -> dict[str, Any]:
    """A new public room, created anonymously: its creation answer (owner token included)."""
    resp = await client.post("/api/rooms", json={"title": title})
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = await resp.json()
    return room


async def room_json(client: Client, room_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/api/rooms/{room_id}")).json()
    return body


async def until_room(
    rooms: RoomService, room_id: str, check: Callable[[Room], bool], within: float = 3.0
) -> Room:
    """Wait (bounded) until the stored room satisfies ``check``; the room then."""
    deadline = time.monotonic() + within
    while True:
        room = await rooms.get(room_id)
        if check(room):
            return room
        if time.monotonic() > deadline:
            raise AssertionError(f"room {room_id} never got there: {room}")
        await asyncio.sleep(0.01)


# -- rooms and events for the store suites ---------------------------------------------------

#: the webhook endpoints a store stages rows for, and the suites' clock origin (ms)
ENDPOINTS = ("http://hooks.example/a", "http://hooks.example/b")
T0 = 1_790_000_000_000


def make_room(n: int, *, created_at: int | None = None, **changes: Any) -> Room:
    values: dict[str, Any] = {
        "id": f"room{n:03d}",
        "title": f"测试 room {n}",
        "stream_key": f"key{n:03d}",
        "created_at": T0 + n if created_at is None else created_at,
        "publish_token": f"publish-secret-{n}",
        "owner_token_hash": hash_token(f"owner-secret-{n}"),
    }
    values.update(changes)
    return Room(**values)


def event(kind: EventType, room: Room, at: int = T0, **extra: Any) -> RoomEvent:
    return RoomEvent(type=kind, room_id=room.id, at=at, extra=extra)


def publish(room: Room, client_id: str = "c1", token: str | None = None, **kw: str) -> HookEvent:
    """SRS's on_publish of ``room``'s stream with its publish token (or ``token``)."""
    return HookEvent(
        action="on_publish",
        client_id=client_id,
        app="live",
        stream=room.stream_key,
        param=f"?secret={room.publish_token if token is None else token}",
        **kw,
    )


class Gate:
    """Holds the next call of ``owner.name`` (an async method, a store's ``update`` say) once
    armed: before the real call (``before``) or after it returned, until :meth:`open`. It
    widens a window the real code has (the call suspends anyway), so that a test can act in
    it; :meth:`entered` tells when the call is held. Restore the method with :meth:`close`."""

    def __init__(self, owner: Any, name: str, *, before: bool) -> None:
        self._owner, self._name, self._before = owner, name, before
        self._real: Callable[..., Awaitable[Any]] = getattr(owner, name)
        self._armed = False
        self._entered = asyncio.Event()
        self._released = asyncio.Event()
        setattr(owner, name, self._call)

    async def _call(self, *args: Any, **kwargs: Any) -> Any:
        if not self._armed:
            return await self._real(*args, **kwargs)
        self._armed = False
        if self._before:
            self._entered.set()
            await self._released.wait()
            return await self._real(*args, **kwargs)
        result = await self._real(*args, **kwargs)
        self._entered.set()
        await self._released.wait()
        return result

    def arm(self) -> None:
        self._armed = True

    async def entered(self, within: float = 5.0) -> None:
        await asyncio.wait_for(self._entered.wait(), within)

    def open(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.open()
        setattr(self._owner, self._name, self._real)
