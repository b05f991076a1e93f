"""SRS adapters: the HTTP API client (kick, stream listing) and the URLs users see."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

import aiohttp

from livehub.config import DEFAULT_ORIGIN, Config
from livehub.domain.hooks import Publisher
from livehub.domain.srs_params import stream_of
from livehub.tasks import drain

log = logging.getLogger(__name__)

#: SRS answers API errors with HTTP 200 and a non-zero code
SRS_CLIENT_NOT_FOUND = 2049


#: a stream key made only of what ``quote`` and ``quote_plus`` leave as it is (every key
#: livehub makes) goes into URLs as it is
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch


def with_token(urls: dict[str, str], token: str) -> dict[str, str]:
    """Play URLs carrying a private room's viewer token as ``token=`` (SRS hands the query to
    on_play as ``param``; WHEP's whole query)."""
    query = urlencode({"token": token})
    return {name: f"{url}{'&' if '?' in url else '?'}{query}" for name, url in urls.items()}


class SRSUnavailable(Exception):
    """The SRS HTTP API could not be reached or answered something unusable."""


@dataclass(frozen=True)
class PublicUrls:
    """Play and publish URLs built from the configured public host and ports."""

    host: str
    app: str
    rtmp_port: int
    http_port: int
    api_port: int

    @classmethod
    def from_config(cls, config: Config) -> PublicUrls:
        return cls(
            host=config.public_host,
            app=config.srs_app,
            rtmp_port=config.rtmp_port,
            http_port=config.srs_http_port,
            api_port=config.srs_api_port,
        )

    def play(self, stream_key: str) -> dict[str, str]:
        """The play URLs of a stream (a fresh dict). Lists show thousands: a key that needs no
        escaping is appended to prefixes built once; any other is built once per key."""
        if _URL_SAFE(stream_key):
            webrtc, whep, http = self._play_prefixes
            return {
                "webrtc": webrtc + stream_key,
                "whep": whep + stream_key,
                "flv": f"{http}{stream_key}.flv",
                "hls": f"{http}{stream_key}.m3u8",
            }
        return dict(self._play(stream_key))

    @functools.cached_property
    def _play_prefixes(self) -> tuple[str, str, str]:
        """What :meth:`_play` puts before a stream key that needs no escaping."""
        app = urlencode({"app": self.app})
        return (
            f"webrtc://{self.host}/{self.app}/",
            f"http://{self.host}:{self.api_port}/rtc/v1/whep/?{app}&stream=",
            f"http://{self.host}:{self.http_port}/{self.app}/",
        )

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one PublicUrls per app, never freed
    def _play(self, stream_key: str) -> dict[str, str]:
        key = quote(stream_key)
        query = urlencode({"app": self.app, "stream": stream_key})
        return {
            "webrtc": f"webrtc://{self.host}/{self.app}/{key}",
            "whep": f"http://{self.host}:{self.api_port}/rtc/v1/whep/?{query}",
            "flv": f"http://{self.host}:{self.http_port}/{self.app}/{key}.flv",
            "hls": f"http://{self.host}:{self.http_port}/{self.app}/{key}.m3u8",
        }

    def publish(self, stream_key: str, token: str) -> dict[str, str]:
        key = quote(stream_key)
        secret = urlencode({"secret": token})
        server = f"rtmp://{self.host}:{self.rtmp_port}/{self.app}"
        whip_query = urlencode({"app": self.app, "stream": stream_key, "secret": token})
        return {
            "token": token,
            "rtmp_url": f"{server}/{key}?{secret}",
            "obs_server": server,
            "obs_stream_key": f"{key}?{secret}",
            "whip_url": f"http://{self.host}:{self.api_port}/rtc/v1/whip/?{whip_query}",
            "srt_url": (
                f"srt://{self.host}:10080?streamid=#!::r={self.app}/{key},secret={token},m=publish"
            ),
        }


class SRSClient:
    """The SRS HTTP API of one origin. Tracks reachability for ``/readyz`` and learns the
    origin's ``server`` and ``service`` ids from every reply; never raises on kick."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        app: str,
        name: str = DEFAULT_ORIGIN,
    ) -> None:
        self._session = session
        # SRS's API Basic auth (http_api.auth, SRS >= 5.0.152) from ``user:password@`` in the
        # URL; the URL kept and used carries no credentials, so no message can show them
        parts = urlsplit(base_url.rstrip("/"))
        self._headers: dict[str, str] | None = None
        if parts.username is not None:
            user, password = unquote(parts.username), unquote(parts.password or "")
            self._headers = {"Authorization": aiohttp.encode_basic_auth(user, password)}
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        self._base = urlunsplit(parts)
        self._app = app
        self.name = name
        self.reachable: bool | None = None
        self.last_error: str | None = None
        self.last_ok: float | None = None
        self.service_id: str | None = None
        #: the SRS ``server_id`` (every API reply's ``server`` since 5.0.135): hooks from this
        #: origin carry it, so it tells which origin accepted a publisher
        self.server_id: str | None = None

    async def _request(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        url = f"{self._base}{path}"
        try:
            async with self._session.request(
                method, url, params=params or None, headers=self._headers
            ) as resp:
                if resp.status != 200:
                    raise SRSUnavailable(f"{method} {path}: HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failed(f"{method} {path}: {type(exc).__name__}: {exc}")
            raise SRSUnavailable(self.last_error or "") from exc
        except SRSUnavailable as exc:
            self._failed(str(exc))
            raise
        if not isinstance(body, dict):
            self._failed(f"{method} {path}: reply is not a JSON object")
            raise SRSUnavailable(self.last_error or "")
        self.reachable = True
        self.last_error = None
        self.last_ok = time.time()
        service = body.get("service")
        if isinstance(service, str) and service:
            self.service_id = service
        server = body.get("server")
        if isinstance(server, str) and server:
            self.server_id = server
        return body

    def mark_unreachable(self, message: str) -> None:
        self._failed(message)

    def _failed(self, message: str) -> None:
        if self.reachable is not False:
            log.warning("SRS API %s unreachable: %s", self.name, message)
        self.reachable = False
        self.last_error = message

    async def kick(self, client_id: str) -> bool:
        """``DELETE /api/v1/clients/{id}``. Failures are logged, not raised."""
        try:
            body = await self._request("DELETE", f"/api/v1/clients/{quote(client_id, safe='')}")
        except SRSUnavailable:
            log.warning("could not kick SRS client %s", client_id)
            return False
        code = body.get("code")
        if code == 0:
            log.info("kicked SRS client %s", client_id)
            return True
        if code == SRS_CLIENT_NOT_FOUND:
            log.info("SRS client %s already gone", client_id)
        else:
            log.warning("SRS refused to kick client %s: code %s", client_id, code)
        return False

    async def publishing(self, count: int = 500, max_pages: int = 200) -> dict[str, str | None]:
        """Streams of our app with an active publisher: stream key (the name, a play extension
        stripped, as the hooks read it) → publisher client id.

        Reads ``GET /api/v1/streams/?start=&count=`` page by page (SRS raises ``count`` to at
        least 10 and lists no more than asked), so no stream is missed however many there are.
        Raises :class:`SRSUnavailable` when SRS cannot tell (then nothing may be ended).
        """
        result: dict[str, str | None] = {}
        async for stream in self._listed("/api/v1/streams/", "streams", count, max_pages):
            if not isinstance(stream, dict) or stream.get("app") != self._app:
                continue
            publish = stream.get("publish")
            if isinstance(publish, dict) and publish.get("active") is True:
                cid = publish.get("cid")
                # a publish to ``KEY.flv`` is SRS's source ``/live/KEY``, listed by the name
                # ``KEY.flv``: the stream key as the hooks took it
                _, key = stream_of(self._app, str(stream.get("name")))
                result[key] = cid if isinstance(cid, str) else None
        return result

    async def players(self, count: int = 500, max_pages: int = 200) -> dict[str, str]:
        """Players of our app's streams: SRS client id → stream key (publishers left out).

        Reads ``GET /api/v1/clients/?start=&count=`` page by page; the stream is the client's
        ``url`` (``/app/stream``, a play extension stripped). Raises :class:`SRSUnavailable`
        when SRS cannot tell.
        """
        result: dict[str, str] = {}
        async for client in self._listed("/api/v1/clients/", "clients", count, max_pages):
            if not isinstance(client, dict) or client.get("publish") is not False:
                continue
            cid, url = client.get("id"), client.get("url")
            if not isinstance(cid, str) or not cid or not isinstance(url, str):
                continue
            app, stream = stream_of("", "", url.partition("?")[0])
            if app == self._app and stream:
                result[cid] = stream
        return result

    async def _listed(
        self, path: str, field: str, count: int, max_pages: int
    ) -> AsyncIterator[object]:
        """The items of SRS's paged list ``GET path?start=&count=`` (its ``field``), page by
        page until a short page (SRS raises ``count`` to at least 10 and lists no more than
        asked), so none is missed however many there are. Raises :class:`SRSUnavailable` on
        an unexpected reply, or past ``max_pages`` pages."""
        count = max(count, 10)
        for page in range(max_pages):
            body = await self._request("GET", path, start=page * count, count=count)
            items = body.get(field)
            if body.get("code") != 0 or not isinstance(items, list):
                self._failed(f"GET {path}: unexpected reply code {body.get('code')!r}")
                raise SRSUnavailable(self.last_error or "")
            for item in items:
                yield item
            if len(items) < count:
                return
        raise SRSUnavailable(f"GET {path}: more than {max_pages * count} {field}")

    async def ping(self) -> bool:
        """``GET /api/v1/versions``: whether the API answers now. Never raises."""
        try:
            body = await self._request("GET", "/api/v1/versions")
        except SRSUnavailable:
            return False
        if body.get("code") != 0:
            self._failed(f"GET /api/v1/versions: reply code {body.get('code')!r}")
            return False
        return True


PROBE_TIMEOUT = 2.0


async def probe(client: SRSClient) -> bool:
    """Whether the SRS API answers now (for readiness), within :data:`PROBE_TIMEOUT`."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return await client.ping()
    except TimeoutError:
        client.mark_unreachable(f"GET /api/v1/versions: no answer within {PROBE_TIMEOUT:g} s")
        return False


class SRSOrigins:
    """The configured SRS origins (one or several), by name.

    Which origin accepted a publisher is told by the hook's ``server_id``: each origin's API
    reports its own in every reply (``server``), learned on every call (reconciliation asks
    every origin at start-up and each interval). Hooks come from SRS's address, which behind
    a proxy is the proxy's, so the address is not used. Every origin needs its own server id:
    a fresh container makes one; never give two origins the same ``SRS_SERVER_ID`` or share
    their ``objs/srs.id``.
    """

    def __init__(self, clients: Iterable[SRSClient]) -> None:
        self.clients = tuple(clients)
        if not self.clients:
            raise ValueError("at least one SRS origin is needed")
        self._by_name = {client.name: client for client in self.clients}

    @property
    def primary(self) -> SRSClient:
        return self.clients[0]

    def origin_of(self, server_id: str | None) -> str | None:
        """The name of the origin whose API reported ``server_id``; with one origin, that one
        (an SRS older than 5.0.135 reports none)."""
        if len(self.clients) == 1:
            return self.clients[0].name
        if not server_id:
            return None
        matches = [client.name for client in self.clients if client.server_id == server_id]
        if len(matches) > 1:
            log.error("SRS origins %s report the same server id %s", matches, server_id)
            return None
        return matches[0] if matches else None

    def route(self, server_id: str | None, origin: str | None) -> SRSClient | None:
        """The origin of a publisher: by its server id as learned now (a renamed origin keeps
        it), else by the origin name stored with the room."""
        name = self.origin_of(server_id)
        if name is None and origin is not None and origin in self._by_name:
            name = origin
        return self._by_name.get(name) if name is not None else None

    def lost(self, server_id: str | None, origin: str | None) -> bool:
        """Whether a publisher's origin is known to be down: its API failed the last call
        (with one origin, never: there is nowhere else to publish)."""
        if len(self.clients) == 1:
            return False
        client = self.route(server_id, origin)
        return client is not None and client.reachable is False

    async def learn(self) -> None:
        """Ask every origin whose server id is not known yet (``/api/v1/versions``)."""
        unknown = [client for client in self.clients if client.server_id is None]
        if unknown:
            await asyncio.gather(*(probe(client) for client in unknown))


class Kicker:
    """Kicks publishers from SRS in the background (the room service's injected kick), on the
    origin that accepted them.

    The room service calls it synchronously; each kick runs as a task this object keeps until
    it is done, and :meth:`drain` waits for (then cancels) what is left at shutdown. Kicks asked
    for before the SRS origins exist (start-up) are logged and dropped: reconciliation ends
    what SRS still publishes for an ended room anyway. A publisher whose origin cannot be told
    (its SRS sent no ``server_id`` and no origin name was stored, or the origins are down) is
    kicked on every origin: SRS client ids are random per origin, elsewhere the kick answers
    "client not found".
    """

    def __init__(self) -> None:
        self.origins: SRSOrigins | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    @property
    def client(self) -> SRSClient | None:
        """The first origin (one-SRS set-ups and readiness)."""
        return self.origins.primary if self.origins is not None else None

    def origin_of(self, server_id: str | None) -> str | None:
        """The room service's ``origin_of``: None until the origins are started."""
        return self.origins.origin_of(server_id) if self.origins is not None else None

    def origin_lost(self, server_id: str | None, origin: str | None) -> bool:
        """The room service's ``origin_lost``: False until the origins are started."""
        return self.origins.lost(server_id, origin) if self.origins is not None else False

    def __call__(self, publisher: Publisher) -> None:
        if self.origins is None:
            log.warning(
                "cannot kick SRS client %s: the SRS client is not started", publisher.client_id
            )
            return
        task = asyncio.ensure_future(self._kick(self.origins, publisher))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _kick(origins: SRSOrigins, publisher: Publisher) -> bool:
        client = origins.route(publisher.server_id, publisher.origin)
        if client is None and publisher.server_id:
            await origins.learn()
            client = origins.route(publisher.server_id, publisher.origin)
        if client is not None:
            return await client.kick(publisher.client_id)
        log.warning(
            "origin of SRS client %s unknown: kicking it on every origin", publisher.client_id
        )
        results = await asyncio.gather(
            *(each.kick(publisher.client_id) for each in origins.clients)
        )
        return any(results)

    async def drain(self, budget: float) -> None:
        """Let kicks in flight finish within ``budget`` seconds; cancel the rest."""
        late = await drain(list(self._tasks), budget)
        if late:
            log.warning("%d publisher kicks cancelled at shutdown", late)
