"""Whole-process cluster signaling for the tests: a cluster of livehub nodes and a member's
WebSocket on one of them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.processes import LivehubProcess


class Node(LivehubProcess):
    """One ``python -m livehub`` process of the cluster, logging to ``node-<name>.log``."""

    def __init__(
        self, tmp_path: Path, name: str, database_url: str, redis_url: str, **env: str
    ) -> None:
        settings = {
            "LIVEHUB_VIEWER_COUNT_INTERVAL": "0.05",
            "LIVEHUB_DATABASE_URL": database_url,
            "LIVEHUB_REDIS_URL": redis_url,
            **env,
        }
        db = str(tmp_path / f"unused-{name}.db")
        super().__init__(f"node-{name}", tmp_path, settings, "--db", db)
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"


class Member:
    """One signaling connection; every event it receives is kept, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.peer_id = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.events.append(msg.json())

    async def send(self, **message: Any) -> None:
        await self.ws.send_json(message)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    async def until(
        self, check: Callable[[dict[str, Any]], bool], within: float = 10.0
    ) -> dict[str, Any]:
        """The first event that ``check`` accepts, waiting for it (bounded)."""
        deadline = time.monotonic() + within
        while True:
            for event in self.events:
                if check(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no such event in time; got {self.events[-10:]}")
            await asyncio.sleep(0.02)

    async def until_after(
        self, mark: int, check: Callable[[dict[str, Any]], bool], within: float = 10.0
    ) -> dict[str, Any]:
        """:meth:`until` among the events from index ``mark`` on (``len(events)`` earlier)."""
        deadline = time.monotonic() + within
        while True:
            for event in self.events[mark:]:
                if check(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no such event in time; got {self.events[mark:][-10:]}")
            await asyncio.sleep(0.02)

    def last_count(self) -> int | None:
        counts = self.of_type("viewer-count")
        return counts[-1]["viewerCount"] if counts else None

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Cluster:
    def __init__(self, tmp_path: Path, database_url: str, redis_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.redis_url = redis_url
        self.nodes: list[Node] = []
        self.members: list[Member] = []
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def start(self, *names: str, **env: str) -> list[Node]:
        started = []
        for name in names:  # one after the other: the first one migrates the database
            node = Node(self.tmp_path, name, self.database_url, self.redis_url, **env)
            self.nodes.append(node)
            await node.start()
            started.append(node)
        return started

    async def create_room(self, node: Node, **fields: Any) -> dict[str, Any]:
        """A room created through ``node`` (``fields``: more of the request's, e.g.
        ``visibility="private"``)."""
        body = {"title": "x", **fields}
        async with self.session.post(f"{node.url}/api/rooms", json=body) as resp:
            assert resp.status == 201
            room: dict[str, Any] = await resp.json()
            return room

    async def get(self, node: Node, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.get(node.url + path, **kwargs) as resp:
            return resp.status, await resp.json()

    async def viewer_count(self, node: Node, room_id: str) -> int:
        status, body = await self.get(node, f"/api/rooms/{room_id}")
        assert status == 200, body
        count: int = body["viewerCount"]
        return count

    async def join(
        self, node: Node, room: dict[str, Any], name: str, *, host: bool = False
    ) -> Member:
        ws = await self.session.ws_connect(node.ws_url)
        member = Member(ws)
        self.members.append(member)
        message: dict[str, Any] = {"type": "join", "roomId": room["id"], "name": name}
        if host:
            message.update(role="host", token=room["ownerToken"])
        await member.send(**message)
        joined = await member.until(lambda e: e["type"] in ("joined", "error"))
        assert joined["type"] == "joined", joined
        member.peer_id = joined["peerId"]
        return member

    async def close(self) -> None:
        for member in self.members:
            with contextlib.suppress(Exception):
                await member.close()
        await self.session.close()
        for node in self.nodes:
            await node.kill()
        for node in self.nodes:
            node.check_cancellations()


def of(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """Matches an event of type ``kind`` whose ``fields`` have these values."""
    return lambda e: e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
