"""Rooms created over the REST API for the webhook tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import Client


async def create(client: Client, title: str = "Events") -> dict[str, Any]:
    resp = await client.post("/api/rooms", json={"title": title})
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = await resp.json()
    return room
