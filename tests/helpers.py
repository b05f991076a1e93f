"""Small helpers the API tests share: waiting for background effects, reading metrics and
rooms over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from livehub.domain.room import Room
from livehub.domain.service import RoomService
from tests.conftest import Client


async def eventually(check: Callable[[], bool], within: float = 3.0) -> None:
    """Wait (bounded) until ``check()`` holds: for effects of background tasks."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def scrape(client: Client, name: str, **labels: str) -> float:
    """One sample from ``/metrics``, parsed as Prometheus text."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


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
