"""The cluster tests' engines (fixtures ``postgres``, ``redis_server``, ``pg_url``,
``redis_prefix``) are in ``tests/conftest.py``: the store behaviour suite runs on PostgreSQL too.
Here: ``make_node``, whole-process nodes of one cluster, and ``cluster``, a cluster of them with
members (a module may override it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.members import Cluster
from tests.cluster.nodes import Node, StartNode
from tests.engines import RedisEngine


@pytest.fixture
def node_settings() -> dict[str, str]:
    """``LIVEHUB_*`` settings every node of a test module gets (a module overrides this)."""
    return {}


@pytest.fixture
async def make_node(
    tmp_path: Path, pg_url: str, redis_alone: RedisEngine, node_settings: dict[str, str]
) -> AsyncIterator[StartNode]:
    """Builds nodes of one cluster (not started) on one PostgreSQL database and one Redis:
    ``make_node(name, *args, **env)``; every one is killed after the test."""
    nodes: list[Node] = []

    def make(name: str, *args: str, **env: str) -> Node:
        settings = {
            "LIVEHUB_DATABASE_URL": pg_url,
            "LIVEHUB_REDIS_URL": redis_alone.url,
            **node_settings,
            **env,
        }
        node = Node(name, tmp_path, settings, *args)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.kill()
    for node in nodes:
        node.check_cancellations()


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str, redis_alone: RedisEngine) -> AsyncIterator[Cluster]:
    """Nodes of one cluster (``Cluster.start``) on one PostgreSQL database and a Redis of the
    test's own, stopped at the end."""
    instance = Cluster(tmp_path, pg_url, redis_alone.url)
    yield instance
    await instance.close()
