"""Whole-process cluster nodes for tests: ``python -m livehub`` subprocesses on loopback ports,
all on one PostgreSQL database and one Redis, logging to files of the test's directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import HOOK_SECRET
from tests.processes import ROOT, LivehubProcess

__all__ = ["ROOT", "Node", "StartNode", "create_room", "get_json", "hook", "room_on"]


class Node(LivehubProcess):
    """One cluster node; ``args`` go on its command line (``--workers 2``); it runs in
    ``tmp_path`` and logs to ``tmp_path/<name>.log``."""

    def __init__(self, name: str, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        super().__init__(name, tmp_path, env, *args, cwd=tmp_path)

    @property
    def leads(self) -> bool:
        """Whether its log says it took the housekeeping leader lock (and not lost it)."""
        text = self.text()
        took = text.rfind("took leader lock livehub:leader:housekeeping")
        return took >= 0 and took > text.rfind("lost leader lock livehub:leader:housekeeping")


#: the ``make_node`` fixture (tests/cluster/conftest.py): ``make_node(name, *args, **env)``
StartNode = Callable[..., Node]


async def hook(
    session: aiohttp.ClientSession, node: Node, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Post an SRS hook to ``node`` as SRS does; the HTTP status and the JSON reply."""
    async with session.post(
        f"{node.url}/api/hooks/srs?secret={HOOK_SECRET}",
        data=json.dumps(body, separators=(",", ":")),
        headers={"Content-Type": "application/json"},
    ) as resp:
        reply: dict[str, Any] = await resp.json(content_type=None)
        return resp.status, reply


async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.get(url, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def create_room(session: aiohttp.ClientSession, node: Node, title: str) -> dict[str, Any]:
    async with session.post(f"{node.url}/api/rooms", json={"title": title}) as resp:
        assert resp.status == 201, await resp.text()
        room: dict[str, Any] = await resp.json()
        return room


async def room_on(session: aiohttp.ClientSession, node: Node, room_id: str) -> dict[str, Any]:
    status, body = await get_json(session, f"{node.url}/api/rooms/{room_id}")
    assert status == 200, (node.name, body)
    room: dict[str, Any] = body
    return room
