"""The ports: what differs between embedded and cluster mode, listed together.

Each is a narrow Protocol the domain owns; :mod:`livehub.engines` (the one place that branches
on the mode) gives each its adapter for a config. Behaviour suites run every adapter of a port
(``tests/test_store_behaviour.py``, ``tests/test_hub_behaviour.py``).

- :class:`RoomStore`: ``livehub.adapters.sqlite.store.SQLiteStore`` (embedded),
  ``livehub.adapters.postgres.store.PostgresStore`` (cluster);
- :class:`PlayerCounts`: ``livehub.adapters.memory.players.MemoryPlayers``,
  ``livehub.adapters.redis.players.RedisPlayers``;
- :class:`RoomHub` (``livehub.domain.room_hub``): ``livehub.domain.hub.Hub``,
  ``livehub.domain.cluster_hub.ClusterHub``;
- :class:`Bus`: ``livehub.adapters.memory.bus.LocalBus``, ``livehub.adapters.redis.bus.RedisBus``.

The hub's own ports: :class:`Sink` (a connection, adapted by the API layer; ``domain.peer``),
:class:`PresenceListener` (what the signaling hears of other nodes; ``domain.presence``) and
:class:`BusHandler` (what a node's hub does with the bus's traffic). The webhook outbox's port,
``livehub.webhooks.queue.DeliveryQueue``, belongs to the webhooks feature (SQLite or PostgreSQL,
in the store's database).
"""

from __future__ import annotations

from livehub.domain.bus import Bus, BusHandler, Member, PresenceDelta, Snapshot
from livehub.domain.peer import Sink
from livehub.domain.presence import PresenceListener
from livehub.domain.room_hub import RoomHub
from livehub.domain.store import PlayerCounts, RoomStore

__all__ = [
    "Bus",
    "BusHandler",
    "Member",
    "PlayerCounts",
    "PresenceDelta",
    "PresenceListener",
    "RoomHub",
    "RoomStore",
    "Sink",
    "Snapshot",
]
