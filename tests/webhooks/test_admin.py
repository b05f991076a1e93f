"""The app with webhooks, as production builds it, over real HTTP: admin endpoints (list, retry),
metrics, the OpenAPI document, and a stuck receiver that slows nothing else."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from livehub.webhooks.schedule import RetrySchedule
from tests.conftest import ADMIN_TOKEN
from tests.helpers import eventually
from tests.webhooks.conftest import (
    Receiver,
    StartReceiver,
    start,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def expected_view(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    view = {
        "id": row["id"],
        "webhookId": f"msg_{row['id']}",
        "endpoint": "http://127.0.0.1:" + row["endpoint"].split(":")[2].split("/")[0],
        "roomId": row["room_id"],
        "seq": row["seq"],
        "type": row["type"],
        "state": row["state"],
        "attempts": row["attempts"],
        "createdAt": row["created_at"],
        "nextAttemptAt": row["next_attempt_at"] if row["state"] == "pending" else None,
        "lastStatus": row["last_status"],
        "lastError": row["last_error"],
        "deliveredAt": row["delivered_at"],
        "payload": {
            "type": row["type"],
            "timestamp": "2026-11-30T13:00:00.000Z",
            "data": {"id": row["room_id"], "status": "live", "seq": row["seq"]},
        },
    }
    view.update(changes)
    return view


async def test_a_failed_delivery_is_listed_retried_and_delivered(
    aiohttp_client: AiohttpClient, tmp_path: Path, receiver_factory: StartReceiver
) -> None:
    receiver = await receiver_factory(default=(500, {}))
    client, outbox = await start(
        aiohttp_client, tmp_path, receiver, RetrySchedule(caps=(0.01, 0.01))
    )
    outbox.add([receiver.url], "r1", "room.live")
    outbox.add([receiver.url], "r2", "room.created", delay_ms=3_600_000)
    await eventually(lambda: outbox.states() == ["failed", "pending"])
    failed, pending = outbox.rows()

    resp = await client.get("/api/webhooks/deliveries?state=failed", headers=ADMIN)
    assert resp.status == 200
    assert await resp.json() == [expected_view(failed)]
    assert failed["attempts"] == 3 and failed["last_error"] == "HTTP 500"
    resp = await client.get("/api/webhooks/deliveries", headers=ADMIN)
    assert await resp.json() == [expected_view(pending), expected_view(failed)]
    resp = await client.get("/api/webhooks/deliveries?limit=1&offset=1", headers=ADMIN)
    assert await resp.json() == [expected_view(failed)]

    receiver.default = (204, {})
    resp = await client.post(f"/api/webhooks/deliveries/{failed['id']}/retry", headers=ADMIN)
    assert resp.status == 200
    body = await resp.json()
    assert (body["state"], body["attempts"], body["id"]) == ("pending", 0, failed["id"])
    await receiver.wait_for(1)
    assert receiver.received[0]["id"] == f"msg_{failed['id']}"
    await eventually(lambda: outbox.states() == ["delivered", "pending"])

    resp = await client.post(f"/api/webhooks/deliveries/{failed['id']}/retry", headers=ADMIN)
    assert resp.status == 409
    assert await resp.json() == {
        "error": "Only a failed delivery can be retried; this one is delivered",
        "code": "delivery_not_failed",
        "details": {"id": failed["id"], "state": "delivered"},
    }
    resp = await client.post("/api/webhooks/deliveries/999999/retry", headers=ADMIN)
    assert resp.status == 404
    assert await resp.json() == {
        "error": "Webhook delivery not found",
        "code": "delivery_not_found",
        "details": {"id": 999999},
    }
    assert outbox.states() == ["delivered", "pending"]
    assert receiver.rejected == []


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ("/api/webhooks/deliveries?state=lost", "state"),
        ("/api/webhooks/deliveries?limit=0", "limit"),
        ("/api/webhooks/deliveries?limit=1001", "limit"),
        ("/api/webhooks/deliveries?offset=-1", "offset"),
        ("/api/webhooks/deliveries?limit=x", "limit"),
        # ASCII digits only: int() takes these
        ("/api/webhooks/deliveries?limit=%EF%BC%91%EF%BC%90", "limit"),  # full-width 10
        ("/api/webhooks/deliveries?offset=%2B1", "offset"),
        ("/api/webhooks/deliveries?limit=1_0", "limit"),
        ("/api/webhooks/deliveries?limit=%207", "limit"),
        ("/api/webhooks/deliveries?secret=1", "secret"),
        ("/api/webhooks/deliveries?state=failed&state=pending", "state"),
    ],
)
async def test_bad_list_queries_name_the_field(
    target: str, field: str, aiohttp_client: AiohttpClient, tmp_path: Path, receiver: Receiver
) -> None:
    client, _ = await start(aiohttp_client, tmp_path, receiver)
    resp = await client.get(target, headers=ADMIN)
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == "validation_error" and list(body["details"]) == [field]


@pytest.mark.parametrize(
    "delivery_id",
    ["abc", "0", "-1", "1.5", "99999999999999999999", "%EF%BC%91", "%D9%A1", "+1", "0_1"],
)
async def test_bad_delivery_ids_name_the_field(
    delivery_id: str, aiohttp_client: AiohttpClient, tmp_path: Path, receiver: Receiver
) -> None:
    client, outbox = await start(aiohttp_client, tmp_path, receiver)
    resp = await client.post(f"/api/webhooks/deliveries/{delivery_id}/retry", headers=ADMIN)
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == "validation_error" and list(body["details"]) == ["deliveryId"]
    assert outbox.rows() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/webhooks/deliveries"), ("POST", "/api/webhooks/deliveries/1/retry")],
)
async def test_admin_token_required(
    method: str, path: str, aiohttp_client: AiohttpClient, tmp_path: Path, receiver: Receiver
) -> None:
    client, _ = await start(aiohttp_client, tmp_path, receiver)
    resp = await client.request(method, path)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["code"] == "unauthorized"
    resp = await client.request(method, path, headers={"Authorization": "Bearer not-the-token"})
    assert resp.status == 403
    assert await resp.json() == {
        "error": "The token does not grant access to webhook deliveries",
        "code": "forbidden",
        "details": None,
    }


async def test_without_urls_the_endpoints_say_webhooks_are_off(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client, _ = await start(aiohttp_client, tmp_path, None)
    resp = await client.get("/api/webhooks/deliveries", headers=ADMIN)
    assert resp.status == 404
    assert await resp.json() == {
        "error": "Webhooks are not configured (LIVEHUB_WEBHOOK_URLS)",
        "code": "webhooks_disabled",
        "details": None,
    }
    metrics = await (await client.get("/metrics")).text()
    assert "livehub_webhook" not in metrics


async def _scraped_when(scraped: Awaitable[str], line: str) -> str | None:
    text = await scraped
    return text if line in text else None


async def test_metrics_count_outcomes_and_the_queue(
    aiohttp_client: AiohttpClient, tmp_path: Path, receiver_factory: StartReceiver
) -> None:
    receiver = await receiver_factory(replies=[(500, {})])
    client, outbox = await start(aiohttp_client, tmp_path, receiver)
    outbox.add([receiver.url], "r1", "room.live")
    outbox.add([receiver.url], "r2", "room.live", delay_ms=3_600_000)
    await receiver.wait_for(1)
    await eventually(lambda: outbox.states() == ["delivered", "pending"])

    async def scrape() -> str:
        return await (await client.get("/metrics")).text()

    # the queue figures are the dispatcher's last reading (taken each pass here): the pass
    # that moved the rows may have read them before it did
    text = await eventually(
        lambda: _scraped_when(scrape(), 'livehub_webhook_queue{state="pending"} 1.0')
    )
    assert 'livehub_webhook_deliveries_total{outcome="delivered"} 1.0' in text
    assert 'livehub_webhook_deliveries_total{outcome="retried"} 1.0' in text
    assert 'livehub_webhook_deliveries_total{outcome="failed"} 0.0' in text
    assert 'livehub_webhook_queue{state="pending"} 1.0' in text
    assert 'livehub_webhook_queue{state="delivered"} 1.0' in text
    assert 'livehub_webhook_queue{state="failed"} 0.0' in text
    age = next(
        line for line in text.splitlines() if line.startswith("livehub_webhook_oldest_pending")
    )
    assert 0.0 <= float(age.split()[1]) < 30


async def test_openapi_documents_the_admin_endpoints(
    aiohttp_client: AiohttpClient, tmp_path: Path, receiver: Receiver
) -> None:
    client, _ = await start(aiohttp_client, tmp_path, receiver)
    spec = await (await client.get("/api/openapi.json")).json()
    listing = spec["paths"]["/api/webhooks/deliveries"]["get"]
    assert listing["security"] == [{"adminToken": []}]
    assert {param["name"] for param in listing["parameters"]} == {"state", "limit", "offset"}
    retry = spec["paths"]["/api/webhooks/deliveries/{deliveryId}/retry"]["post"]
    assert set(retry["responses"]) == {"200", "400", "401", "403", "404", "409", "503"}
    delivery = spec["components"]["schemas"]["WebhookDelivery"]
    assert {"webhookId", "roomId", "seq", "nextAttemptAt", "payload"} <= set(delivery["properties"])


async def test_a_stuck_receiver_slows_no_request(
    aiohttp_client: AiohttpClient, tmp_path: Path, receiver_factory: StartReceiver
) -> None:
    # the receiver sits on every request for longer than the whole test: requests served
    # meanwhile can only have been served without waiting for it
    receiver = await receiver_factory(hang=8.0)
    client, outbox = await start(aiohttp_client, tmp_path, receiver, webhook_timeout=8.0)
    for number in range(40):
        outbox.add([receiver.url], f"r{number}", "room.live")
    await eventually(lambda: len(receiver.attempts) >= 16)
    for _ in range(20):
        resp = await client.post("/api/rooms", json={"title": "Busy"})
        assert resp.status == 201
        resp = await client.get("/api/webhooks/deliveries?limit=5", headers=ADMIN)
        assert resp.status == 200
    assert receiver.received == []  # every attempt is still stuck in the receiver
