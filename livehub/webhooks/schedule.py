"""The retry schedule: exponential backoff with full jitter, as a pure function.

Retry *n* waits a uniformly random time between 0 and ``caps[n - 1]`` (full jitter: receivers
coming back after an outage are not hit by every sender at once). The first caps are seconds, so
an event whose first two attempts fail still arrives within 90 s and a receiver back after a
short outage gets its events within a minute; later caps grow to an hour. While an event is
younger than ``recent`` (five minutes), no cap exceeds ``recent_cap`` (a minute) whatever the
draws were, so the minute holds even when the first waits happened to be short. After the last
retry the delivery is ``failed``. ``Retry-After`` on a failed answer pushes the next attempt back,
up to ``max_retry_after``; on a 2xx it is not read.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import re
from collections.abc import Callable

#: upper bound of the wait before retry 1, 2, ...: five retries within a minute of each other,
#: then up to an hour apart. The waits are uniform in [0, cap], so the expected total is half
#: the sum of the caps: 24 hours (86 400 s), over 56 retries.
DEFAULT_CAPS: tuple[float, ...] = (
    5,
    30,
    60,
    60,
    60,
    300,
    600,
    1200,
    1800,
    *(3600,) * 46,
    3085,
)

#: the longest ``Retry-After`` honoured, in seconds (an hour): the schedule's default cap
MAX_RETRY_AFTER = 3600.0
#: delta-seconds are ASCII digits (RFC 9110 ``1*DIGIT``): ``str.isdigit`` also takes ``²``
#: (which ``int()`` refuses), and ``int()`` the digits of every script
_DELTA_SECONDS = re.compile(r"[0-9]+", re.ASCII)
#: digits read at most: ten already say more than 300 years, longer than any cap (and a
#: 400-digit number is no float)
_DELTA_DIGITS = 10


@dataclasses.dataclass(frozen=True)
class RetrySchedule:
    caps: tuple[float, ...] = DEFAULT_CAPS
    #: a ``Retry-After`` longer than this is cut to it
    max_retry_after: float = MAX_RETRY_AFTER
    #: an event younger than ``recent`` seconds waits at most ``recent_cap`` between attempts
    recent: float = 300.0
    recent_cap: float = 60.0

    def __post_init__(self) -> None:
        if not self.caps or any(cap < 0 for cap in self.caps):
            raise ValueError("caps must be non-negative and not empty")

    @property
    def max_attempts(self) -> int:
        """The first attempt and every retry."""
        return 1 + len(self.caps)

    def delay(
        self,
        attempts: int,
        random: Callable[[], float],
        retry_after: float | None = None,
        age: float | None = None,
    ) -> float | None:
        """Seconds to wait after ``attempts`` failed attempts, or ``None``: give up.

        ``random()`` returns a float in [0, 1) (``random.random``; tests pass a constant);
        ``age`` is the event's age in seconds.
        """
        if attempts < 1:
            raise ValueError("attempts counts failed attempts: at least 1")
        if attempts > len(self.caps):
            return None
        cap = self.caps[attempts - 1]
        if age is not None and age < self.recent:
            cap = min(cap, self.recent_cap)
        wait = cap * random()
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait

    def scaled(self, factor: float) -> RetrySchedule:
        """The same shape, ``factor`` times as fast or slow (tests run it in milliseconds)."""
        return RetrySchedule(
            caps=tuple(cap * factor for cap in self.caps),
            max_retry_after=self.max_retry_after * factor,
            recent=self.recent * factor,
            recent_cap=self.recent_cap * factor,
        )


def parse_retry_after(value: str | None, now: float, cap: float = MAX_RETRY_AFTER) -> float | None:
    """``Retry-After`` in seconds from ``now`` (Unix seconds): delta-seconds (ASCII digits) or
    an HTTP date, at most ``cap``. ``None`` when absent or unreadable; never negative."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        digits = value.lstrip("0") or "0"
        return cap if len(digits) > _DELTA_DIGITS else min(float(digits), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a date without a zone is read as such
        return None
    seconds = when.timestamp() - now
    return min(max(0.0, seconds), cap) if math.isfinite(seconds) else None
