"""The retry schedule (a pure function) and ``Retry-After`` parsing."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livehub.webhooks.schedule import DEFAULT_CAPS, RetrySchedule, parse_retry_after

SCHEDULE = RetrySchedule()
#: LIVEHUB_WEBHOOK_TIMEOUT's default: a failing attempt may take that long
TIMEOUT = 10.0


def test_an_event_whose_first_two_attempts_fail_arrives_within_90_s() -> None:
    # attempt 1 (up to a timeout), wait, attempt 2 (up to a timeout), wait, attempt 3 answers
    worst = TIMEOUT + SCHEDULE.caps[0] + TIMEOUT + SCHEDULE.caps[1]
    assert worst <= 90 - TIMEOUT


@given(
    attempts=st.integers(1, 56),
    draw=st.floats(0, 1, exclude_max=True),
    age=st.floats(0, 300, exclude_max=True),
)
def test_a_receiver_back_after_a_short_outage_gets_events_within_a_minute(
    attempts: int, draw: float, age: float
) -> None:
    # however many attempts the draws packed into the first five minutes of an event's life
    delay = SCHEDULE.delay(attempts, lambda: draw, age=age)
    assert delay is not None and delay <= 60
    # later the caps apply as they are
    assert SCHEDULE.delay(attempts, lambda: draw, age=300) == SCHEDULE.caps[attempts - 1] * draw


def test_waits_grow_to_an_hour_and_the_schedule_lasts_24_hours() -> None:
    assert list(SCHEDULE.caps) == [*sorted(SCHEDULE.caps[:-1]), SCHEDULE.caps[-1]]
    assert max(SCHEDULE.caps) == 3600
    # full jitter: each wait is uniform in [0, cap], so the expected total is half the caps
    assert sum(SCHEDULE.caps) / 2 == 24 * 3600
    assert SCHEDULE.max_attempts == len(DEFAULT_CAPS) + 1 == 57


@given(attempts=st.integers(1, 56), draw=st.floats(0, 1, exclude_max=True))
def test_every_wait_is_within_its_cap(attempts: int, draw: float) -> None:
    delay = SCHEDULE.delay(attempts, lambda: draw)
    assert delay is not None
    assert 0 <= delay <= SCHEDULE.caps[attempts - 1]
    assert delay == SCHEDULE.caps[attempts - 1] * draw


def test_after_the_last_retry_it_gives_up() -> None:
    assert SCHEDULE.delay(56, lambda: 0.5) == DEFAULT_CAPS[-1] / 2
    assert SCHEDULE.delay(57, lambda: 0.5) is None
    assert SCHEDULE.delay(57, lambda: 0.5, retry_after=1) is None
    with pytest.raises(ValueError):
        SCHEDULE.delay(0, lambda: 0.5)


@given(
    attempts=st.integers(1, 56),
    draw=st.floats(0, 1, exclude_max=True),
    retry_after=st.floats(0, 10**7),
)
def test_retry_after_pushes_the_wait_back_up_to_an_hour(
    attempts: int, draw: float, retry_after: float
) -> None:
    delay = SCHEDULE.delay(attempts, lambda: draw, retry_after)
    assert delay == max(SCHEDULE.caps[attempts - 1] * draw, min(retry_after, 3600))


def test_scaled_keeps_the_shape() -> None:
    fast = SCHEDULE.scaled(0.001)
    assert fast.caps[0] == pytest.approx(0.005)
    assert fast.max_retry_after == pytest.approx(3.6)
    assert fast.max_attempts == SCHEDULE.max_attempts


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("120", 120.0),
        (" 0 ", 0.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        # ASCII digits only: these pass str.isdigit() and int() refuses them
        ("\u00b2", None),
        ("\u0661\u0662", None),
        # longer than the cap, however long (400 digits are no float)
        ("7200", 3600.0),
        ("9" * 400, 3600.0),
        ("9" * 10_000, 3600.0),
        ("0" * 20 + "5", 5.0),
        (email.utils.formatdate(NOW + 7200, usegmt=True), 3600.0),
        # a date whose numbers overflow C integers
        ("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", None),
        ("Mon, 01 Jan 2020 00:00:00 +99999999999999999999", None),
    ],
    ids=lambda value: repr(value)[:24],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_parse_retry_after_caps_at_the_schedules_cap() -> None:
    fast = RetrySchedule().scaled(0.001)
    assert parse_retry_after("9" * 400, NOW, fast.max_retry_after) == pytest.approx(3.6)
    assert parse_retry_after("2", NOW, fast.max_retry_after) == 2.0
