"""The public port's connections before any request reaches the app: how many one address may
hold, and how long a connection may take to send its first request.

aiohttp serves every connection it accepts, and a connection that never completes its request
headers is closed only by its keep-alive timeout (75 s): a client trickling a header line now
and then (Slowloris), or opening connections and sending nothing, held a descriptor and a
connection for that long each, as many as it liked, until the process ran out of descriptors
and nobody else was served. So, on the public port:

- an address holds at most ``LIVEHUB_MAX_SOCKETS_PER_ADDRESS`` connections (IPv6 per /64, like
  the WebSocket limit); the next gets ``429 too_many_connections`` with ``Retry-After`` and is
  closed at once. A trusted proxy's connections (``LIVEHUB_TRUSTED_PROXIES``) are not counted:
  behind a proxy every client comes from its address, and the proxy limits its clients itself.
- a connection whose first request has not reached the app ``LIVEHUB_HEADER_TIMEOUT`` seconds
  after it opened is closed (a real client sends its request at once). So is a kept-alive
  connection whose next request has not reached the app ``LIVEHUB_HEADER_TIMEOUT`` seconds
  after its first bytes came: aiohttp alone let a later request's headers trickle for the
  keep-alive timeout (``LIVEHUB_KEEPALIVE_TIMEOUT``, 75 s). An idle kept-alive connection (no
  byte since the last response) is the keep-alive timeout's.

Where a request's head ends needs no parsing here: aiohttp parses it, and the request reaches
:func:`guard_middleware` (the outermost middleware) at once. What the guard must know is where
the next head *begins*: the first bytes after a response, once the request's body has all
arrived (bytes before are its body, or requests pipelined behind it, whose heads are complete),
be it before the response or after it (a handler that never read the body: aiohttp reads the
rest then, and the head that follows it is timed as any other).
aiohttp handles each request in a task of its own that ends once the response is written: the
middleware adds a done callback to it (``asyncio.current_task()``). Were a later aiohttp to
handle requests in the connection's own task, the callback would come at the connection's end:
later requests would be the keep-alive timeout's again, as before, and nothing closed wrongly.

The guard wraps aiohttp's protocol factory (``AppRunner.server``) in :class:`GuardedSite`, a
site of aiohttp's public ``BaseSite``: each connection's protocol is aiohttp's own, behind a
thin :class:`asyncio.Protocol` that forwards every call. :func:`guard_middleware` tells the
guard when a connection's request arrived.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from yarl import URL

from livehub.config import Network, in_networks
from livehub.domain.addresses import address_key
from livehub.domain.errors import TooManyConnections

log = logging.getLogger(__name__)

#: seconds an address over its connection cap is told to wait (as the WebSocket limit's 429)
RETRY_AFTER = 10


def refusal(limit: int) -> bytes:
    """The whole answer to a connection over its address's cap: 429 in the one error shape,
    then the connection is closed."""
    exc = TooManyConnections(limit, retry_after=RETRY_AFTER)
    body = orjson.dumps({"error": exc.message, "code": exc.code, "details": exc.details})
    head = (
        "HTTP/1.1 429 Too Many Requests\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {RETRY_AFTER}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class ConnectionGuard:
    """Counts the public port's connections per address and closes those whose requests'
    heads are late. ``per_address`` 0: no cap; ``header_timeout`` 0: no deadline."""

    def __init__(
        self, *, per_address: int, header_timeout: float, trusted_proxies: Sequence[Network]
    ) -> None:
        self.per_address = per_address
        self.header_timeout = header_timeout
        self.trusted_proxies = tuple(trusted_proxies)
        #: open connections per address key (only addresses that hold one)
        self.counts: dict[str, int] = {}
        self.refused = 0
        self.timed_out = 0
        self._refusal = refusal(per_address)
        #: connections whose next request's head has begun (or, for a new connection, may
        #: begin) and not reached the app, with their deadline
        self._waiting: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server``: ``factory``'s protocols, guarded."""
        return lambda: GuardedProtocol(self, factory)

    def admit(self, transport: asyncio.BaseTransport) -> str | None:
        """The new connection's address key if it may stay ("" when it is not counted), None
        when its address holds its cap (then it was answered and closed)."""
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        if not self.per_address or not isinstance(host, str):
            return ""
        if self.trusted_proxies and in_networks(host, self.trusted_proxies):
            return ""
        key = address_key(host)
        held = self.counts.get(key, 0)
        if held >= self.per_address:
            self.refused += 1
            # a TCP transport (uvloop's is no asyncio.WriteTransport subclass: no isinstance)
            cast(asyncio.Transport, transport).write(self._refusal)
            transport.close()
            return None
        self.counts[key] = held + 1
        return key

    def arm(self, transport: asyncio.BaseTransport) -> None:
        if self.header_timeout > 0:
            loop = asyncio.get_running_loop()
            handle = self._waiting.get(transport)
            if handle is not None:
                handle.cancel()
            self._waiting[transport] = loop.call_later(self.header_timeout, self._late, transport)

    def began(self, request: web.BaseRequest) -> None:
        """A request reached the app: its connection's deadline is off, and (a guarded
        connection) the first bytes after its response begin the next head."""
        transport = request.transport
        if transport is None:
            return
        if self._waiting:
            handle = self._waiting.pop(transport, None)
            if handle is not None:
                handle.cancel()
        if self.header_timeout > 0:
            protocol = transport.get_protocol()
            if type(protocol) is GuardedProtocol:  # not the internal port's connections
                protocol.began(request)

    def release(self, key: str, transport: asyncio.BaseTransport) -> None:
        handle = self._waiting.pop(transport, None)
        if handle is not None:
            handle.cancel()
        if key:
            held = self.counts.get(key, 0) - 1
            if held > 0:
                self.counts[key] = held
            else:
                self.counts.pop(key, None)

    def _late(self, transport: asyncio.BaseTransport) -> None:
        if self._waiting.pop(transport, None) is not None:
            self.timed_out += 1
            transport.close()


class GuardCollector(Collector):
    """The guard's figures for ``/metrics``, read at scrape time (the accept path pays one
    integer increment per refused or late connection)."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard

    def collect(self) -> Iterator[CounterMetricFamily]:
        refused = CounterMetricFamily(
            "livehub_connections_closed",
            "Connections to the public port closed before a request, by reason",
            labels=["reason"],
        )
        refused.add_metric(["address_limit"], self._guard.refused)
        refused.add_metric(["header_timeout"], self._guard.timed_out)
        yield refused


def _drop(data: bytes) -> None:
    """Bytes of a connection that was refused or is gone."""


#: the context of the guard's callbacks on request tasks: they read no context variable
_NO_CONTEXT = contextvars.Context()


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, made only once the guard admitted it; every
    call of the transport is forwarded to it.

    Received bytes go to ``_receive``: the inner protocol's ``data_received`` itself, except
    while the connection is idle after a response (then :meth:`_next_head`, which starts the
    next head's deadline and puts the inner one back) and once it is refused or gone. So a
    chunk costs one call, the same whether the guard watches (a kept-alive connection between
    requests) or not (during a request, a WebSocket after its upgrade)."""

    __slots__ = (
        "_answering",
        "_factory",
        "_guard",
        "_inner",
        "_key",
        "_receive",
        "_request",
        "_requests",
        "_transport",
    )

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._factory = factory
        self._inner: asyncio.Protocol | None = None
        self._key: str | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._receive: Callable[[bytes], None] = _drop
        #: requests of this connection that reached the app
        self._requests = 0
        #: the latest of them and its task, until the task ends (:meth:`_answered`)
        self._request: web.BaseRequest | None = None
        self._answering: asyncio.Task[Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._key = self._guard.admit(transport)
        if self._key is None:
            return
        self._inner = self._factory()
        self._receive = self._inner.data_received
        self._inner.connection_made(transport)
        self._guard.arm(transport)

    def data_received(self, data: bytes) -> None:
        self._receive(data)

    def began(self, request: web.BaseRequest) -> None:
        """``request`` reached the app (its head is complete): once it is answered, the
        connection is idle. Called in the request's task."""
        self._requests += 1
        if self._inner is not None:
            self._receive = self._inner.data_received
        task = asyncio.current_task()
        if task is not None:
            # the request and its task on the protocol, and no context copied for the callback
            # (the callback reads none): a WebSocket's task lasts as long as its connection,
            # and a partial with a copied context was a quarter of a kB of each one's memory
            self._request, self._answering = request, task
            task.add_done_callback(self._answered, context=_NO_CONTEXT)

    def _answered(self, task: asyncio.Task[Any]) -> None:
        """The task of the latest request ended (its response is written): once its body is
        all in (at once, or when aiohttp has read the rest after the response: bytes of it
        are no head), the next bytes begin the next head. The task of an earlier request (a
        later one reached the app since) changes nothing."""
        if task is not self._answering:
            return
        request, self._request, self._answering = self._request, None, None
        if request is not None and self._inner is not None:
            request.content.on_eof(functools.partial(self._idle, self._requests))

    def _idle(self, number: int) -> None:
        """Request ``number`` is answered and its body all in: the connection is idle, unless
        another request reached the app since (pipelined) or the connection is gone."""
        if number == self._requests and self._inner is not None:
            self._receive = self._next_head

    def _next_head(self, data: bytes) -> None:
        inner = self._inner
        if inner is None or self._transport is None:
            return
        self._receive = inner.data_received
        self._guard.arm(self._transport)
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._key is not None and self._transport is not None:
            self._guard.release(self._key, self._transport)
        self._transport = None
        self._receive = _drop
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard` (``web.TCPSite``
    otherwise: same arguments to ``loop.create_server``)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: ConnectionGuard,
        host: str,
        port: int,
        *,
        backlog: int,
        reuse_port: bool | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._runner_ = runner
        self._guard = guard
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._backlog_ = backlog
        self._listening: asyncio.AbstractServer | None = None

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host or "0.0.0.0", port=self._port))

    async def start(self) -> None:
        await super().start()
        server = self._runner_.server
        assert server is not None, "the runner is set up before its sites start"
        factory: Callable[[], Any] = server
        self._listening = await asyncio.get_running_loop().create_server(
            self._guard.wrap(factory),
            self._host,
            self._port,
            backlog=self._backlog_,
            reuse_port=self._reuse_port,
        )

    async def stop(self) -> None:
        if self._listening is not None:
            self._listening.close()
        await super().stop()


def guard_middleware(guard: ConnectionGuard) -> Middleware:
    """Tells ``guard`` that a request arrived (its head is complete: its connection's header
    deadline is off). The outermost middleware; returns the handler's awaitable as it is, with
    no frame of its own around it (see ``turns_middleware``)."""

    @web.middleware
    def request_arrived(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        guard.began(request)
        return handler(request)

    return request_arrived
