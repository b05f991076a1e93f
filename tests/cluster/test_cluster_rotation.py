"""Rotating ``LIVEHUB_CLUSTER_KEY`` and ``LIVEHUB_VIEWER_TOKEN_SECRET`` in a running cluster:
whole livehub processes on a throwaway PostgreSQL and Redis, in the middle of a rotation (one
node restarted with ``old,new``, the other already with ``new,old``: docs/security.md). Chat
crosses the bus both ways and each node's viewer tokens open the private room on the other."""

from __future__ import annotations

from tests.cluster.members import Cluster, Member, Node, of

OLD_KEY, NEW_KEY = "cluster-key-old-0123456789-abcdefghij", "cluster-key-new-0123456789-abcdefghij"
OLD_SECRET = "viewer-token-secret-old-0123456789-abcdef"
NEW_SECRET = "viewer-token-secret-new-0123456789-abcdef"


async def test_nodes_mid_rotation_work_together(cluster: Cluster) -> None:
    (a,) = await cluster.start(
        "a",
        LIVEHUB_CLUSTER_KEY=f"{OLD_KEY},{NEW_KEY}",
        LIVEHUB_VIEWER_TOKEN_SECRET=f"{OLD_SECRET},{NEW_SECRET}",
    )
    (b,) = await cluster.start(
        "b",
        LIVEHUB_CLUSTER_KEY=f"{NEW_KEY},{OLD_KEY}",
        LIVEHUB_VIEWER_TOKEN_SECRET=f"{NEW_SECRET},{OLD_SECRET}",
    )
    room = await cluster.create_room(a, visibility="private")
    rid = room["id"]

    async def mint(node: Node) -> str:
        async with cluster.session.post(
            f"{node.url}/api/rooms/{rid}/viewer-tokens",
            json={},
            headers={"Authorization": f"Bearer {room['ownerToken']}"},
        ) as resp:
            assert resp.status == 201
            token: str = (await resp.json())["token"]
            return token

    by_a, by_b = await mint(a), await mint(b)  # signed with the old and the new secret
    for node, token in ((a, by_b), (b, by_a)):
        status, view = await cluster.get(node, f"/api/rooms/{rid}?token={token}")
        assert (status, view["id"]) == (200, rid)

    async def viewer(node: Node, token: str, name: str) -> Member:
        ws = await cluster.session.ws_connect(node.ws_url)
        member = Member(ws)
        cluster.members.append(member)
        await member.send(type="join", roomId=rid, token=token, name=name)
        joined = await member.until(lambda e: e["type"] in ("joined", "error"))
        assert joined["type"] == "joined", joined
        return member

    host = await cluster.join(a, room, "H", host=True)
    on_b = await viewer(b, by_a, "on b")
    on_a = await viewer(a, by_b, "on a")
    await on_b.send(type="chat", roomId=rid, text="from b")
    await host.until(of("chat", text="from b"))
    await on_a.until(of("chat", text="from b"))
    await host.send(type="chat", roomId=rid, text="from a")
    await on_b.until(of("chat", text="from a"))
    for node in (a, b):
        assert "not signed with LIVEHUB_CLUSTER_KEY" not in node.log.read_text()
        assert "LIVEHUB_CLUSTER_KEY: 2 values (a rotation)" in node.log.read_text()
