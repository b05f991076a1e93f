"""Prometheus metrics. Live state (rooms, connections, relay counters) is read at scrape time,
so the WebSocket hot path pays nothing for it; hooks are counted as they are handled. Room
figures come from the store (counts by status are O(1) there), read before each render."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from livehub.domain.room import RoomStatus
from livehub.domain.room_hub import RoomHub
from livehub.domain.service import RoomService


class _StateCollector(Collector):
    def __init__(self, hub: RoomHub) -> None:
        self._hub = hub
        #: room figures read from the store just before a render
        self.by_status: dict[RoomStatus, int] = dict.fromkeys(RoomStatus, 0)
        self.reconnecting = 0

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        by_status = GaugeMetricFamily("livehub_rooms", "Rooms by status", labels=["status"])
        for status, count in self.by_status.items():
            by_status.add_metric([status.value], count)
        yield by_status
        yield GaugeMetricFamily(
            "livehub_rooms_reconnecting",
            "Live rooms whose publisher left and may reconnect within the window",
            value=self.reconnecting,
        )
        yield GaugeMetricFamily(
            "livehub_ws_connections", "Open signaling connections", value=len(self._hub.peers)
        )
        yield GaugeMetricFamily(
            "livehub_ws_room_members",
            "Room memberships over all signaling connections",
            value=sum(len(members) for members in self._hub.rooms.values()),
        )
        stats = self._hub.stats
        yield CounterMetricFamily(
            "livehub_ws_messages_relayed", "Frames delivered to connections", value=stats.relayed
        )
        yield CounterMetricFamily(
            "livehub_ws_messages_dropped",
            "Frames not delivered (closed, slow or throttled peers)",
            value=stats.dropped,
        )
        yield CounterMetricFamily(
            "livehub_ws_slow_disconnects",
            "Connections closed because their outbound queue stayed full",
            value=stats.slow_disconnects,
        )


class Metrics:
    def __init__(self, rooms: RoomService, hub: RoomHub) -> None:
        self._rooms = rooms
        self.registry = CollectorRegistry()
        self._state = _StateCollector(hub)
        self.registry.register(self._state)
        self.hooks = Counter(
            "livehub_srs_hooks",
            "SRS callbacks by action and result",
            ["action", "result"],
            registry=self.registry,
        )
        self.hook_seconds = Histogram(
            "livehub_srs_hook_seconds",
            "Time to handle an SRS callback",
            ["action"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.ws_refused = Counter(
            "livehub_ws_upgrades_refused",
            "WebSocket upgrades refused before the handshake, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.srs_api_up = Gauge(
            "livehub_srs_api_up",
            "1 if the last reconciliation reached the SRS HTTP API, 0 if it could not",
            registry=self.registry,
        )
        self.reconciles = Counter(
            "livehub_srs_reconciles",
            "Reconciliation runs against the SRS API by result",
            ["result"],
            registry=self.registry,
        )

    async def render(self) -> bytes:
        for status in RoomStatus:
            self._state.by_status[status] = await self._rooms.count(status)
        live = await self._rooms.live_rooms()
        self._state.reconnecting = sum(1 for room in live if room.reconnecting)
        return generate_latest(self.registry)
