"""Durable state across nodes: three ``python -m livehub`` processes on one throwaway PostgreSQL
and one Redis. A room created on one node is served by every node; hooks for one room are
answered by whichever node SRS (through the proxy) picks; racing hooks on different nodes are
settled by the store's conditional writes; a reconnect window opened by a node that dies still
ends on time, swept by the leader; the leader's lock moves when it dies."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import pytest

from tests.cluster.nodes import Node, StartNode, create_room, get_json, hook, room_on
from tests.conftest import hook_for
from tests.helpers import eventually

WINDOW = 2.0  # the reconnect window of these nodes, seconds
SWEEP = 0.3  # their sweep interval


@pytest.fixture
def node_settings() -> dict[str, str]:
    return {"LIVEHUB_RECONNECT_WINDOW": str(WINDOW), "LIVEHUB_SWEEP_INTERVAL": str(SWEEP)}


@pytest.fixture
async def three(make_node: StartNode) -> list[Node]:
    """Nodes a, b, c; a starts first, so a holds the leader lock."""
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    await a.start()
    await asyncio.gather(b.start(), c.start())
    assert a.leads and not b.leads and not c.leads, a.text()
    return [a, b, c]


def publish(room: dict[str, Any], client_id: str) -> dict[str, Any]:
    return hook_for(room, "on_publish.json", client_id=client_id)


async def test_a_room_created_on_one_node_is_served_by_every_node_at_once(
    three: list[Node],
) -> None:
    a, b, c = three
    async with aiohttp.ClientSession() as session:
        room = await create_room(session, a, "everywhere")
        seen = await asyncio.gather(*(room_on(session, node, room["id"]) for node in (b, c, a)))
        owner_only = ("ownerToken", "publish", "record")
        public = {k: v for k, v in room.items() if k not in owner_only}
        assert seen == [public] * 3
        # the owner token works on another node; the change is seen by every node
        owner = {"Authorization": f"Bearer {room['ownerToken']}"}
        status, owned = await get_json(session, f"{c.url}/api/rooms/{room['id']}", headers=owner)
        assert status == 200 and owned["publish"] == room["publish"]
        async with session.post(f"{b.url}/api/rooms/{room['id']}/close", headers=owner) as resp:
            assert resp.status == 200
        for node in three:
            assert (await room_on(session, node, room["id"]))["status"] == "ended"
        lists = await asyncio.gather(
            *(get_json(session, f"{node.url}/api/rooms?status=ended") for node in three)
        )
        assert {tuple(r["id"] for r in body) for _, body in lists} == {(room["id"],)}


async def test_two_publishers_on_two_nodes_at_once_exactly_one_wins(three: list[Node]) -> None:
    a, b, c = three
    async with aiohttp.ClientSession() as session:
        rooms = [await create_room(session, c, f"race {n}") for n in range(12)]
        for room in rooms:
            (status_a, reply_a), (status_b, reply_b) = await asyncio.gather(
                hook(session, a, publish(room, "pubaaaa1")),
                hook(session, b, publish(room, "pubbbbb2")),
            )
            assert (status_a, status_b) == (200, 200)
            codes = sorted([reply_a["code"], reply_b["code"]])
            assert codes[0] == 0 and codes[1] != 0, (reply_a, reply_b)
            winner, loser = ("pubaaaa1", "pubbbbb2")[:: 1 if reply_a["code"] == 0 else -1]
            refused = reply_b if winner == "pubaaaa1" else reply_a
            assert refused["msg"] == "room already has a live publisher"
            views = [await room_on(session, node, room["id"]) for node in three]
            assert {(v["status"], v["reconnecting"]) for v in views} == {("live", False)}
            # the loser's end event (SRS sends one) changes nothing, on any node
            _, reply = await hook(session, c, hook_for(room, "on_unpublish.json", client_id=loser))
            assert reply == {"code": 0}
            view = await room_on(session, a, room["id"])
            assert (view["status"], view["reconnecting"]) == ("live", False)
            # the winner's is the one that counts: the window opens, seen by every node
            _, reply = await hook(session, c, hook_for(room, "on_unpublish.json", client_id=winner))
            assert (await room_on(session, b, room["id"]))["reconnecting"] is True


async def test_publish_racing_close_on_different_nodes_never_leaves_an_impossible_state(
    three: list[Node],
) -> None:
    a, b, c = three
    outcomes = set()
    async with aiohttp.ClientSession() as session:
        for n in range(16):
            room = await create_room(session, a, f"close race {n}")
            owner = {"Authorization": f"Bearer {room['ownerToken']}"}

            async def close(room_id: str = room["id"], headers: dict[str, str] = owner) -> int:
                async with session.post(
                    f"{c.url}/api/rooms/{room_id}/close", headers=headers
                ) as resp:
                    return resp.status

            if n % 2:
                (status, reply), closed = await asyncio.gather(
                    hook(session, b, publish(room, f"pub{n:05d}")), close()
                )
            else:
                closed, (status, reply) = await asyncio.gather(
                    close(), hook(session, b, publish(room, f"pub{n:05d}"))
                )
            assert (status, closed) == (200, 200)
            views = [await room_on(session, node, room["id"]) for node in three]
            assert all(view == views[0] for view in views)
            view = views[0]
            assert view["status"] == "ended"  # a close always ends the room
            if reply["code"] == 0:  # the publish came first: it went live, then ended
                assert view["startTime"] is not None and view["endTime"] >= view["startTime"]
            else:  # the close came first: never live
                assert reply["msg"] == "room has ended" and view["startTime"] is None
            outcomes.add(reply["code"] == 0)
            # nothing brings an ended room back, on any node
            _, again = await hook(session, a, publish(room, "late0001"))
            assert again["code"] != 0
    assert outcomes  # at least one order happened (which ones is up to the scheduler)


async def test_hooks_for_one_room_are_answered_on_different_nodes(three: list[Node]) -> None:
    a, b, c = three
    async with aiohttp.ClientSession() as session:
        room = await create_room(session, a, "hooks anywhere")
        assert (await hook(session, b, publish(room, "enc00001")))[1] == {"code": 0}
        # players counted on two nodes: every node shows both (counts shared in Redis)
        for node, client in ((c, "play0001"), (a, "play0002")):
            play = hook_for(room, "on_play.json", client_id=client)
            assert (await hook(session, node, play))[1] == {"code": 0}

        async def counts() -> bool:
            views = [await room_on(session, node, room["id"]) for node in three]
            return {v["playerCount"] for v in views} == {2}

        await eventually(counts, 5, every=0.1)
        stop = hook_for(room, "on_stop.json", client_id="play0001")
        assert (await hook(session, b, stop))[1] == {"code": 0}

        async def one_player() -> bool:
            views = [await room_on(session, node, room["id"]) for node in three]
            return {v["playerCount"] for v in views} == {1}

        await eventually(one_player, 5, every=0.1)
        # the encoder drops on one node's watch and comes back through another
        unpublish = hook_for(room, "on_unpublish.json", client_id="enc00001")
        assert (await hook(session, c, unpublish))[1] == {"code": 0}
        assert (await room_on(session, a, room["id"]))["reconnecting"] is True
        assert (await hook(session, a, publish(room, "enc00002")))[1] == {"code": 0}
        view = await room_on(session, b, room["id"])
        assert (view["status"], view["reconnecting"]) == ("live", False)
        # the old client's late end event, on yet another node, changes nothing
        assert (await hook(session, b, unpublish))[1] == {"code": 0}
        assert (await room_on(session, c, room["id"]))["reconnecting"] is False


async def open_window(
    session: aiohttp.ClientSession, room: dict[str, Any], publish_on: Node, drop_on: Node
) -> tuple[int, int]:
    """Publish then unpublish; the epoch ms just before and just after the unpublish."""
    assert (await hook(session, publish_on, publish(room, "enc00009")))[1] == {"code": 0}
    before = int(time.time() * 1000)
    unpublish = hook_for(room, "on_unpublish.json", client_id="enc00009")
    assert (await hook(session, drop_on, unpublish))[1] == {"code": 0}
    return before, int(time.time() * 1000)


async def test_a_window_opened_by_a_node_killed_9_still_ends_on_time(three: list[Node]) -> None:
    a, b, c = three
    async with aiohttp.ClientSession() as session:
        room = await create_room(session, c, "orphan window")
        before, after = await open_window(session, room, c, b)
        await b.kill()  # its timer dies with it; the deadline is in the database
        opened = time.monotonic()

        async def ended() -> dict[str, Any] | None:
            view = await room_on(session, c, room["id"])
            return view if view["status"] == "ended" else None

        view = await eventually(ended, WINDOW + 3 * SWEEP + 2, every=0.05)
        took = time.monotonic() - opened
        assert took <= WINDOW + 3 * SWEEP + 1, took  # on time: the leader (a) swept it
        # the broadcast stopped at the unpublish: that is its end
        assert before <= view["endTime"] <= after
        assert await room_on(session, a, room["id"]) == view


async def test_when_the_leader_dies_another_node_leads_and_the_sweep_still_ends_due_rooms(
    three: list[Node],
) -> None:
    a, b, c = three
    async with aiohttp.ClientSession() as session:
        room = await create_room(session, b, "leader gone")
        # the leader opens the window, then dies: no timer, no lock released
        before, after = await open_window(session, room, a, a)
        await a.kill()

        async def new_leader() -> bool:
            return b.leads or c.leads

        await eventually(new_leader, 10, every=0.1)  # lock TTL 5 s + one renewal
        assert not (b.leads and c.leads)

        async def ended() -> dict[str, Any] | None:
            view = await room_on(session, b, room["id"])
            return view if view["status"] == "ended" else None

        view = await eventually(ended, 3, every=0.05)
        assert before <= view["endTime"] <= after
        assert await room_on(session, c, room["id"]) == view


async def test_a_new_node_joining_does_not_take_the_lock_from_the_leader(
    make_node: StartNode,
) -> None:
    a, b = make_node("a"), make_node("b")
    await a.start()
    await b.start()
    await asyncio.sleep(2)  # several renewals
    assert a.leads and not b.leads
    a.send(signal.SIGTERM)  # a clean stop releases the lock at once
    assert await a.exit_code() == 0

    async def taken() -> bool:
        return b.leads

    await eventually(taken, 4, every=0.1)
