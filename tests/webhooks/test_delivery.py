"""The dispatcher against a real receiver that verifies every signature with
``standardwebhooks``: order per room and endpoint, retries, ``Retry-After``, outages, the end
of the schedule, restarts, and no secret anywhere."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from pytest_aiohttp import AiohttpServer

from livehub.adapters.sqlite.outbox import SQLiteDeliveryQueue
from livehub.webhook_settings import endpoint_label
from livehub.webhooks.dispatcher import Dispatcher
from livehub.webhooks.schedule import RetrySchedule
from livehub.webhooks.signing import Signer
from tests.helpers import eventually
from tests.webhooks.conftest import (
    OLD_SECRET,
    SECRET,
    Outbox,
    Receiver,
    StartReceiver,
    secret,
)

#: the production schedule's shape, 500 times as fast (first retries within 10 ms, 60 ms ...)
FAST = RetrySchedule().scaled(0.002)


class Dispatchers:
    """Dispatchers on the test's outbox, each as the app runs it (a task); all stopped at the
    end. ``stop`` is what a process exit does to it."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.running: dict[Dispatcher, asyncio.Task[None]] = {}
        self.outcomes: list[str] = []

    async def __call__(
        self,
        *,
        schedule: RetrySchedule = FAST,
        attempt_timeout: float = 2.0,
        concurrency: int = 4,
        secrets: tuple[str, ...] = (SECRET,),
    ) -> Dispatcher:
        dispatcher = Dispatcher(
            SQLiteDeliveryQueue(self.outbox.path),
            aiohttp.ClientSession(),
            Signer(tuple(secret(value) for value in secrets)),
            schedule=schedule,
            timeout=attempt_timeout,
            concurrency=concurrency,
            poll_interval=0.02,
            stats_interval=0.0,
            random=lambda: 0.5,
            on_outcome=self.outcomes.append,
        )
        self.running[dispatcher] = asyncio.create_task(dispatcher.run())
        return dispatcher

    async def stop(self, dispatcher: Dispatcher) -> None:
        task = self.running.pop(dispatcher)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await dispatcher.stop(grace=0.1)
        await dispatcher.session.close()
        await dispatcher.queue.close()


@pytest.fixture
async def dispatchers(outbox: Outbox) -> AsyncIterator[Dispatchers]:
    running = Dispatchers(outbox)
    yield running
    for dispatcher in list(running.running):
        await running.stop(dispatcher)


def assert_all_verified(*receivers: Receiver) -> None:
    for receiver in receivers:
        assert receiver.rejected == []


async def test_events_arrive_in_order_per_room_and_endpoint_through_errors(
    outbox: Outbox, receiver_factory: StartReceiver, dispatchers: Dispatchers
) -> None:
    flaky = await receiver_factory(replies=[(500, {})] * 3 + [(503, {}), (502, {})])
    steady = await receiver_factory()
    endpoints = [flaky.url, steady.url]
    lifecycle = ["room.created", "room.live", "viewers.updated", "room.reconnecting"]
    lifecycle += ["room.live", "host.joined", "host.left", "room.ended"]
    for step in lifecycle:
        for room in ("r1", "r2", "r3"):
            outbox.add(endpoints, room, step)
    await dispatchers(concurrency=8)
    await flaky.wait_for(24)
    await steady.wait_for(24)
    for receiver in (flaky, steady):
        for room in ("r1", "r2", "r3"):
            assert receiver.types(room) == lifecycle
            assert receiver.seqs(room) == list(range(1, 9))
    assert_all_verified(flaky, steady)
    await eventually(lambda: set(outbox.states()) == {"delivered"})
    # one webhook-id per row, the same on every attempt of it
    ids = {f"msg_{row['id']}" for row in outbox.rows()}
    assert {event["id"] for event in flaky.received + steady.received} == ids
    assert {attempt[1] for attempt in flaky.attempts} == {
        f"msg_{r['id']}" for r in outbox.rows() if r["endpoint"] == flaky.url
    }


async def test_500_then_200_delivers_once_with_the_same_id(
    outbox: Outbox, receiver_factory: StartReceiver, dispatchers: Dispatchers
) -> None:
    receiver = await receiver_factory(replies=[(500, {})])
    outbox.add([receiver.url], "r1", "room.live")
    await dispatchers()

    await receiver.wait_for(1)
    await eventually(lambda: outbox.states() == ["delivered"])
    [row] = outbox.rows()
    assert (row["attempts"], row["last_status"], row["last_error"]) == (2, 204, None)
    assert row["delivered_at"] is not None
    assert [attempt[1] for attempt in receiver.attempts] == [f"msg_{row['id']}"] * 2
    event = receiver.received[0]
    assert event["type"] == "room.live" and event["data"] == {
        "id": "r1",
        "status": "live",
        "seq": 1,
    }
    assert event["headers"]["webhook-id"] == f"msg_{row['id']}"
    assert abs(int(event["headers"]["webhook-timestamp"]) - time.time()) < 60
    assert event["headers"]["Content-Type"] == "application/json"
    assert_all_verified(receiver)


@pytest.mark.parametrize("header", ["1", "http-date"])
async def test_retry_after_is_honoured(
    header: str, outbox: Outbox, receiver_factory: StartReceiver, dispatchers: Dispatchers
) -> None:
    if header == "http-date":
        # an HTTP date has a resolution of one second: ask for 2 s to wait at least 1
        header = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    receiver = await receiver_factory(replies=[(429, {"Retry-After": header})])
    outbox.add([receiver.url], "r1", "room.created")
    # without Retry-After the retry would come within 10 ms
    await dispatchers(schedule=RetrySchedule(caps=(0.01,) * 3))

    await receiver.wait_for(1)
    first, second = receiver.attempts
    assert second[0] - first[0] >= 0.95
    assert second[0] - first[0] < 3.5
    assert_all_verified(receiver)


@pytest.mark.parametrize("header", ["9" * 400, "\u00b2"], ids=["400-digits", "superscript-2"])
async def test_a_2xx_is_a_delivery_whatever_its_retry_after_says(
    header: str, outbox: Outbox, receiver_factory: StartReceiver, dispatchers: Dispatchers
) -> None:
    """A 2xx is not read for ``Retry-After``: 400 digits (no float) killed the attempt's task
    with the row leased, to be sent again at each lease's end with the room's later events
    stuck behind it; ``²`` (``str.isdigit()`` but not ``int()``) made the 200 a failed
    attempt."""
    receiver = await receiver_factory(default=(200, {"Retry-After": header}))
    outbox.add([receiver.url], "r1", "room.live")
    outbox.add([receiver.url], "r1", "room.ended")
    await dispatchers()

    await receiver.wait_for(2, within=3.0)
    await eventually(lambda: outbox.states() == ["delivered", "delivered"])
    assert [(row["attempts"], row["last_status"]) for row in outbox.rows()] == [(1, 200)] * 2
    assert len(receiver.attempts) == 2
    # counted after the row is written: the count may come a moment after the state
    await eventually(lambda: len(dispatchers.outcomes) == 2)
    assert dispatchers.outcomes == ["delivered", "delivered"]


async def test_a_huge_retry_after_waits_the_schedules_cap(
    outbox: Outbox, receiver_factory: StartReceiver, dispatchers: Dispatchers
) -> None:
    receiver = await receiver_factory(replies=[(503, {"Retry-After": "9" * 400})])
    outbox.add([receiver.url], "r1", "room.live")
    await dispatchers(schedule=RetrySchedule(caps=(0.01,) * 3, max_retry_after=0.5))

    await receiver.wait_for(1, within=3.0)
    first, second = receiver.attempts
    assert 0.45 <= second[0] - first[0] < 2.0
    await eventually(lambda: outbox.states() == ["delivered"])
    # counted after the row is written: the count may come a moment after the state
    await eventually(lambda: len(dispatchers.outcomes) == 2)
    assert dispatchers.outcomes == ["retried", "delivered"]


async def test_an_unexpected_error_in_an_attempt_is_a_failed_attempt(
    outbox: Outbox,
    receiver_factory: StartReceiver,
    dispatchers: Dispatchers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug while one row is sent (here: reading the answer's headers) counts as a failed
    attempt of that row, logged, and the row is retried on the schedule: the task does not die
    with the row leased (sent again only at the lease's end, the room's later rows waiting)."""
    calls: list[str | None] = []

    def broken(value: str | None, now: float, cap: float = 0.0) -> float | None:
        calls.append(value)
        raise RuntimeError("a bug in the attempt")

    monkeypatch.setattr("livehub.webhooks.dispatcher.parse_retry_after", broken)
    receiver = await receiver_factory(replies=[(503, {"Retry-After": "1"})])
    outbox.add([receiver.url], "r1", "room.live")
    outbox.add([receiver.url], "r1", "room.ended")
    await dispatchers()

    await receiver.wait_for(2, within=3.0)
    await eventually(lambda: outbox.states() == ["delivered", "delivered"])
    first, second = outbox.rows()
    assert (first["attempts"], second["attempts"]) == (2, 1)
    assert calls == ["1"]
    # counted after the row is written: the count may come a moment after the state
    await eventually(lambda: len(dispatchers.outcomes) == 3)
    assert dispatchers.outcomes == ["retried", "delivered", "delivered"]
    assert receiver.types() == ["room.live", "room.ended"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"webhook msg_{first['id']} to {endpoint_label(receiver.url)}: unexpected error in "
        "the attempt: RuntimeError: a bug in the attempt"
    ]


async def test_receiver_down_then_up_gets_every_event_in_order(
    outbox: Outbox, aiohttp_server: AiohttpServer, dispatchers: Dispatchers
) -> None:
    port = unused_port()
    url = f"http://127.0.0.1:{port}/hooks"
    for step in ("room.created", "room.live", "room.ended"):
        outbox.add([url], "r1", step)
    await dispatchers()
    await eventually(lambda: outbox.rows()[0]["attempts"] >= 2)
    head = outbox.rows()[0]
    assert head["state"] == "pending" and head["last_status"] is None
    assert head["last_error"].startswith("cannot connect")
    # the rows behind the head wait: none was tried
    assert [row["attempts"] for row in outbox.rows()[1:]] == [0, 0]

    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    receiver.server = await aiohttp_server(app, port=port)
    await receiver.wait_for(3)
    assert receiver.types() == ["room.created", "room.live", "room.ended"]
    assert_all_verified(receiver)


async def test_failed_after_the_schedule_then_the_room_moves_on(
    outbox: Outbox, receiver_factory: StartReceiver, dispatchers: Dispatchers
) -> None:
    receiver = await receiver_factory(default=(500, {}))
    outbox.add([receiver.url], "r1", "room.live")
    dispatcher = await dispatchers(schedule=RetrySchedule(caps=(0.01, 0.02)))
    await eventually(lambda: outbox.states() == ["failed"])
    [row] = outbox.rows()
    assert (row["attempts"], row["last_status"], row["last_error"]) == (3, 500, "HTTP 500")
    assert len(receiver.attempts) == 3
    assert receiver.received == []

    # a failed row no longer holds its room's later events back
    receiver.default = (200, {})
    outbox.add([receiver.url], "r1", "room.ended")
    await receiver.wait_for(1)
    assert receiver.seqs("r1") == [2]
    # the receiver has it before the dispatcher has written down the answer: wait for that
    await eventually(lambda: sorted(outbox.states()) == ["delivered", "failed"])
    await dispatcher.refresh_stats(force=True)
    assert dispatcher.stats is not None
    assert {state.value: n for state, n in dispatcher.stats.counts.items()} == {
        "pending": 0,
        "delivered": 1,
        "failed": 1,
    }


async def test_rotation_signs_with_both_secrets(
    outbox: Outbox, receiver_factory: StartReceiver, dispatchers: Dispatchers
) -> None:
    new = await receiver_factory(secret=SECRET)
    old = await receiver_factory(secret=OLD_SECRET)
    outbox.add([new.url, old.url], "r1", "room.created")
    await dispatchers(secrets=(SECRET, OLD_SECRET))
    await new.wait_for(1)
    await old.wait_for(1)
    signature = new.received[0]["headers"]["webhook-signature"]
    assert len(signature.split(" ")) == 2
    assert all(part.startswith("v1,") for part in signature.split(" "))
    assert_all_verified(new, old)


async def test_no_secret_in_payloads_headers_or_logs(
    outbox: Outbox,
    receiver_factory: StartReceiver,
    dispatchers: Dispatchers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = await receiver_factory(replies=[(500, {})])
    token = "endpoint-token-9f8e7d6c5b4a"
    down = f"http://user:{token}@127.0.0.1:{unused_port()}/hooks/{token}?token={token}"
    outbox.add([receiver.url + f"?token={token}", down], "r1", "room.live")
    await dispatchers(schedule=RetrySchedule(caps=(0.01, 0.01)))
    await receiver.wait_for(1)
    await eventually(lambda: "failed" in dispatchers.outcomes)

    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    forbidden = [SECRET, SECRET.removeprefix("whsec_"), key.decode(), token]
    received = repr(receiver.received)
    # livehub's own logs (the test receiver's access log shows its query, as any server's would)
    logs = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("livehub")
    )
    errors = repr(outbox.rows()[1]["last_error"])
    assert "cannot connect" in errors
    for text in forbidden:
        assert text not in received
        assert text not in logs
        assert text not in errors
    assert "failed for good" in logs and down.split("@")[1].split("/")[0] in logs
    assert dispatchers.outcomes.count("failed") == 1


async def test_outbox_survives_a_restart(
    outbox: Outbox,
    aiohttp_server: AiohttpServer,
    dispatchers: Dispatchers,
) -> None:
    port = unused_port()
    url = f"http://127.0.0.1:{port}/hooks"
    outbox.add([url], "r1", "room.created")
    outbox.add([url], "r1", "room.live")
    first = await dispatchers()
    await eventually(lambda: outbox.rows()[0]["attempts"] >= 1)
    await dispatchers.stop(first)
    assert outbox.states() == ["pending", "pending"]

    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    receiver.server = await aiohttp_server(app, port=port)
    await dispatchers()  # a new process on the same file
    await receiver.wait_for(2)
    assert receiver.types() == ["room.created", "room.live"]
    assert_all_verified(receiver)


async def test_a_row_leased_by_a_dead_dispatcher_is_sent_after_the_lease(
    outbox: Outbox, receiver: Receiver, dispatchers: Dispatchers
) -> None:
    outbox.add([receiver.url], "r1", "room.created")
    outbox.add([receiver.url], "r1", "room.live")
    crashed = SQLiteDeliveryQueue(outbox.path)
    [claimed] = await crashed.claim(int(time.time() * 1000), 10, lease=300)
    await crashed.close()  # claimed, never answered: the process died mid-attempt
    assert claimed.seq == 1

    await dispatchers()
    await asyncio.sleep(0.15)
    assert receiver.received == []  # leased: not sent twice at once, and seq 2 waits behind it
    await receiver.wait_for(2)
    assert receiver.seqs("r1") == [1, 2]


async def test_a_hanging_receiver_holds_only_its_slots(
    outbox: Outbox, receiver_factory: StartReceiver, dispatchers: Dispatchers
) -> None:
    stuck = await receiver_factory(hang=30.0)
    fine = await receiver_factory()
    outbox.add([stuck.url], "r1", "room.live")
    outbox.add([fine.url], "r2", "room.live")
    await dispatchers(attempt_timeout=3.0, concurrency=2)
    await fine.wait_for(1)
    # delivered while the stuck attempt still hangs: no attempt on r1 has ended yet
    assert outbox.rows()[0]["attempts"] == 0
    await eventually(lambda: outbox.rows()[0]["attempts"] >= 1, within=15)
    assert outbox.rows()[0]["last_error"] == "timed out after 3 s"
