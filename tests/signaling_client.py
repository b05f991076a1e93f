"""A signaling client for the tests: join a room, wait for an event of a type, read the next event,
the shape of an error event."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

WS = ClientWebSocketResponse


TIMEOUT = 10.0  # a bound that fails a hung test fast, never a speed requirement


async def receive(
    ws: WS, *, skip: tuple[str, ...] = ("viewer-count",), within: float = TIMEOUT
) -> dict[str, Any]:
    """The next event that is not one of ``skip`` (coalesced counts arrive at any time)."""
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            assert msg.type is WSMsgType.TEXT, msg
            data: dict[str, Any] = json.loads(msg.data)
            if data["type"] not in skip:
                return data


async def expect(ws: WS, kind: str) -> dict[str, Any]:
    event = await receive(ws)
    assert event["type"] == kind, event
    return event


async def join(ws: WS, room_id: str, **fields: Any) -> dict[str, Any]:
    await ws.send_json({"type": "join", "roomId": room_id, **fields})
    return await expect(ws, "joined")


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}
