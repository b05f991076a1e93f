"""Webhook metrics in livehub's registry: deliveries by outcome, the outbox by state, and the
age of its oldest pending row. The queue figures are the dispatcher's last reading (refreshed
every few seconds off the loop), so a scrape costs no database query."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from livehub.webhooks.queue import DeliveryState, QueueStats

OUTCOMES = ("delivered", "retried", "failed")


class _QueueCollector(Collector):
    def __init__(self, stats: Callable[[], QueueStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        if stats is None:
            return
        depth = GaugeMetricFamily(
            "livehub_webhook_queue", "Webhook outbox rows by state", labels=["state"]
        )
        for state in DeliveryState:
            depth.add_metric([state.value], stats.counts.get(state, 0))
        yield depth
        oldest = stats.oldest_pending_created_at
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
        yield GaugeMetricFamily(
            "livehub_webhook_oldest_pending_seconds",
            "Age of the oldest webhook not yet delivered (0 when none is pending)",
            value=age,
        )


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "livehub_webhook_deliveries",
            "Webhook attempts by outcome: delivered (2xx), retried (failed, will retry), "
            "failed (failed, schedule over)",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.deliveries.labels(outcome)
        self._registry = registry
        self._stats: Callable[[], QueueStats | None] = lambda: None
        registry.register(_QueueCollector(lambda: self._stats()))

    def count(self, outcome: str) -> None:
        self.deliveries.labels(outcome).inc()

    def read_stats_from(self, stats: Callable[[], QueueStats | None]) -> None:
        self._stats = stats
