"""Per-connection message rate limits: limits real clients never hit and floods always do.

Each connection has three token buckets: a general one that every frame pays for (valid or not:
garbage is throttled too), one for chat messages alone, which a person types and so gets a
much lower rate, and one of bytes for relays (``offer``/``answer``/``candidate``), charged the
payload's size times its recipients, so that a relay cannot amplify one connection's traffic
into the whole room's. A bucket holds ``burst`` tokens and refills at ``rate`` tokens per second; a
rate of 0 turns it off (benchmarks, trusted back-ends). The relay bucket holds one second's worth:
a relay costing more than that never passes.

A message that finds a bucket empty is *refused*: dropped, and the first refusal of an
*episode* is answered with one ``rate_limited`` error. An episode ends after
:data:`FLOOD_QUIET_S` seconds without a refusal. A connection with more than ``flood_after``
refusals in one episode is flooding and is closed with 1008. Messages that get through while
the buckets refill do not end an episode, so a client that keeps sending far above the rate (and
so gets a message through now and then) is still closed.

At the defaults (50/s, burst 200; chat 2/s, burst 5; closed after 200 refusals): an ICE burst or
a renegotiation passes; a burst of 3,000 messages has 200 through, the next 201 refused, and the
connection closed before the rest is read.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

#: seconds without a refused message that end a rate-limit episode
FLOOD_QUIET_S = 1.0
#: what a ``join`` costs of the message rate, its own frame included: each join is announced
#: to the room (``peer-joined`` to up to the presence limit's members), so joining and leaving
#: in a loop would have the room's members hear the message rate many times over. 10: 5 joins
#: a second, 20 at once with the default rate (a client joins its rooms, at most 16, once per
#: connection). Charged to the general bucket: a bucket of its own would cost every
#: connection memory. A burst smaller than this makes a join cost the whole burst.
JOIN_COST = 10


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second."""

    __slots__ = ("_clock", "_last", "_rate", "_tokens", "burst")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self, cost: float = 1.0) -> bool:
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if tokens < cost:
            self._tokens = tokens
            return False
        self._tokens = tokens - cost
        return True


class Verdict(enum.Enum):
    PASS = "pass"
    #: refused; the first refusal of an episode: answer with ``rate_limited``
    REFUSE_AND_TELL = "refuse-and-tell"
    #: refused, silently
    REFUSE = "refuse"
    #: refused, and the connection is flooding: close it (1008)
    CLOSE = "close"


class ConnectionLimiter:
    """The rate limits of one connection."""

    __slots__ = (
        "_chat",
        "_clock",
        "_episode_last",
        "_flood_after",
        "_general",
        "_relay",
        "limits_frames",
        "limits_relays",
        "refused",
    )

    def __init__(
        self,
        *,
        rate_per_s: float,
        rate_burst: int,
        chat_rate_per_s: float,
        chat_rate_burst: int,
        flood_after: int,
        clock: Callable[[], float],
        relay_bytes_per_s: int = 0,
    ) -> None:
        self._general = TokenBucket(rate_per_s, rate_burst, clock) if rate_per_s > 0 else None
        self._chat = (
            TokenBucket(chat_rate_per_s, chat_rate_burst, clock) if chat_rate_per_s > 0 else None
        )
        self._relay = (
            TokenBucket(relay_bytes_per_s, relay_bytes_per_s, clock)
            if relay_bytes_per_s > 0
            else None
        )
        #: whether frames are limited at all (:meth:`frame` is not called per frame otherwise:
        #: it would pass every one, and an episode of other refusals ends in :meth:`_refuse`)
        self.limits_frames = self._general is not None
        #: whether relays are limited at all (:meth:`relay` is not called per relay otherwise)
        self.limits_relays = self._relay is not None
        self._flood_after = flood_after
        self._clock = clock
        #: refusals in the current episode (0: none running)
        self.refused = 0
        self._episode_last = 0.0

    def frame(self) -> Verdict:
        """A frame came in (any frame, decodable or not)."""
        if self._general is None or self._general.take():
            if self.refused:
                self._maybe_end_episode()
            return Verdict.PASS
        return self._refuse()

    def chat(self) -> Verdict:
        """A chat message is about to be sent to its room."""
        if self._chat is None or self._chat.take():
            return Verdict.PASS
        return self._refuse()

    def join(self) -> Verdict:
        """A ``join`` is about to be announced; its frame has paid one token already. It costs
        :data:`JOIN_COST`, or the whole burst where that is smaller (a full bucket always
        pays for a join)."""
        general = self._general
        if general is None or general.take(min(JOIN_COST, general.burst) - 1):
            return Verdict.PASS
        return self._refuse()

    def relay(self, cost: int) -> Verdict:
        """A relay is about to go out: ``cost`` is its payload's bytes times its recipients."""
        if self._relay is None or self._relay.take(cost):
            return Verdict.PASS
        return self._refuse()

    def _refuse(self) -> Verdict:
        now = self._clock()
        if self.refused and now - self._episode_last >= FLOOD_QUIET_S:
            self.refused = 0
        self.refused += 1
        self._episode_last = now
        if self.refused == 1:
            return Verdict.REFUSE_AND_TELL
        if self.refused > self._flood_after:
            return Verdict.CLOSE
        return Verdict.REFUSE

    def _maybe_end_episode(self) -> None:
        if self._clock() - self._episode_last >= FLOOD_QUIET_S:
            self.refused = 0


#: no limits at all (it never refuses, so it keeps no state: one instance serves every peer)
UNLIMITED = ConnectionLimiter(
    rate_per_s=0,
    rate_burst=1,
    chat_rate_per_s=0,
    chat_rate_burst=1,
    flood_after=1,
    clock=lambda: 0.0,
)
