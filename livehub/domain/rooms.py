"""Rooms and their stream lifecycle.

A room is created ``preparing``. SRS's on_publish with the room's publish token makes it
``live`` and remembers the publisher's SRS ``client_id``; on_unpublish from that same client
starts the reconnect window (the room stays live, ``reconnecting``), and the room ends when the
window passes without a new publish, or at once when the window is 0. Closing a room ends it
for good: status never goes back from ``ended``. End events from client ids the room never
accepted change nothing (SRS sends them for refused and busy publishers).

Hooks can be lost, so :meth:`RoomService.reconcile` compares live rooms with SRS's stream list:
a live room SRS does not list as published loses its publisher (through the same window),
unless its publish was accepted within :data:`PUBLISH_GRACE` (SRS lists a stream only once
it has acquired it). Player counts live in memory only; they restart from zero.

Every accepted change is written to the :class:`RoomStore` before it is announced, so a restart
loses nothing that was acknowledged. Listeners hear about every change after it is stored.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import logging
import secrets
import string
import time
from collections.abc import Callable, Iterable
from typing import Protocol
from urllib.parse import parse_qs

from livehub.domain.errors import Forbidden, HookRejected, RoomNotFound, Unauthorized

log = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_lowercase + string.digits
_PLAY_EXTENSIONS = (".flv", ".m3u8", ".ts", ".mp4", ".aac", ".mp3")
TOKEN_PARAM_NAMES = ("secret", "token")


class RoomStatus(enum.StrEnum):
    PREPARING = "preparing"
    LIVE = "live"
    ENDED = "ended"


def now_ms() -> int:
    return int(time.time() * 1000)


def hash_token(token: str) -> str:
    """Owner tokens are stored hashed: a database leak does not hand them out."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A URL-safe random token of 256 bits."""
    return secrets.token_urlsafe(32)


def new_room_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


@dataclasses.dataclass(kw_only=True)
class Room:
    id: str
    title: str
    stream_key: str
    status: RoomStatus = RoomStatus.PREPARING
    created_at: int
    start_time: int | None = None
    end_time: int | None = None
    publish_token: str
    owner_token_hash: str
    publisher_client_id: str | None = None
    publisher_service_id: str | None = None
    #: epoch ms of the on_unpublish that opened the reconnect window, while it is open
    reconnecting_since: int | None = None

    @property
    def reconnecting(self) -> bool:
        return self.reconnecting_since is not None

    def is_owner_token(self, token: str) -> bool:
        return hmac.compare_digest(self.owner_token_hash, hash_token(token))

    def is_publish_token(self, token: str) -> bool:
        return hmac.compare_digest(self.publish_token.encode(), token.encode())


class RoomStore(Protocol):
    """Persistence of rooms: narrow on purpose, so another backend can replace SQLite."""

    def load_all(self) -> list[Room]: ...

    def save(self, room: Room) -> None: ...

    def ping(self) -> bool:
        """Whether the store works now (for readiness)."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """A store that keeps nothing: for tests that do not care about restarts."""

    def load_all(self) -> list[Room]:
        return []

    def save(self, room: Room) -> None:
        pass

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class HookEvent:
    """The parts of an SRS callback body that drive the lifecycle."""

    action: str
    client_id: str
    app: str = ""
    stream: str = ""
    param: str = ""
    stream_url: str = ""
    service_id: str | None = None


def parse_param(param: str) -> dict[str, str]:
    """Parse SRS's ``param`` in any of its shapes: ``?k=v``, ``k=v`` (SRT) or WHIP's raw query.

    One leading ``?`` and a ``#fragment`` are stripped; the first value of each key wins.
    """
    text = param.split("#", 1)[0]
    if text.startswith("?"):
        text = text[1:]
    parsed = parse_qs(text, keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def param_token(param: str) -> str | None:
    fields = parse_param(param)
    for name in TOKEN_PARAM_NAMES:
        if fields.get(name):
            return fields[name]
    return None


def _strip_play_extension(stream: str) -> str:
    for ext in _PLAY_EXTENSIONS:
        if stream.endswith(ext):
            return stream[: -len(ext)]
    return stream


class Scheduler(Protocol):
    def __call__(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


RoomListener = Callable[[Room], None]

#: callbacks that drive the lifecycle; the others SRS may send are acknowledged and ignored
LIFECYCLE_ACTIONS = ("on_publish", "on_unpublish", "on_play", "on_stop")
PASSIVE_ACTIONS = ("on_connect", "on_close", "on_dvr", "on_hls")
HOOK_ACTIONS = LIFECYCLE_ACTIONS + PASSIVE_ACTIONS

#: seconds after an accepted on_publish during which SRS may not list the stream as published
#: yet (on_publish runs before SRS acquires the stream; a WebRTC publisher only becomes active
#: once ICE and DTLS are done), so reconciliation does not take the room for abandoned
PUBLISH_GRACE = 10.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class HookResult:
    """What a callback did. ``allowed`` is SRS's answer; ``outcome`` is for metrics and logs."""

    allowed: bool
    outcome: str  # accepted | rejected | ignored
    reason: str = ""
    room: Room | None = None
    srs_restarted: bool = False


class RoomService:
    """The room registry and the stream lifecycle rules. Synchronous: no await mid-change."""

    def __init__(
        self,
        store: RoomStore | None = None,
        *,
        app: str = "live",
        reconnect_window: float = 30.0,
        publish_grace: float = PUBLISH_GRACE,
        scheduler: Scheduler | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store: RoomStore = store or MemoryStore()
        self._app = app
        self._window_ms = int(reconnect_window * 1000)
        self._scheduler = scheduler
        self._clock = clock
        self._rooms: dict[str, Room] = {}
        self._by_stream: dict[str, Room] = {}
        self._by_publisher: dict[str, Room] = {}
        self._players: dict[str, set[str]] = {}
        self._player_room: dict[str, str] = {}
        self._timers: dict[str, Cancellable] = {}
        #: epoch ms of each room's last accepted on_publish (this process only)
        self._published_at: dict[str, int] = {}
        self.publish_grace_ms = int(publish_grace * 1000)
        self._listeners: list[RoomListener] = []
        self.last_service_id: str | None = None

    # -- registry -------------------------------------------------------------------------

    def load(self, store: RoomStore | None = None) -> None:
        """Use ``store`` (if given) and load its rooms; re-arm reconnect windows still open."""
        if store is not None:
            self._store = store
        for room in self._store.load_all():
            self._index(room)
        for room in self._rooms.values():
            if room.reconnecting_since is not None:
                self._arm_window(room)

    def _index(self, room: Room) -> None:
        self._rooms[room.id] = room
        self._by_stream[room.stream_key] = room
        if room.publisher_client_id and room.status is not RoomStatus.ENDED:
            self._by_publisher[room.publisher_client_id] = room

    def subscribe(self, listener: RoomListener) -> None:
        self._listeners.append(listener)

    def _changed(self, room: Room) -> None:
        self._store.save(room)
        for listener in self._listeners:
            try:
                listener(room)
            except Exception:
                log.exception("room listener failed")

    def create(self, title: str) -> tuple[Room, str]:
        """Create a room; returns it with the owner token (only its hash is kept)."""
        room_id = new_room_id()
        while room_id in self._rooms:  # pragma: no cover - 62 bits of randomness
            room_id = new_room_id()
        owner_token = new_token()
        room = Room(
            id=room_id,
            title=title,
            stream_key=f"stream-{room_id}",
            created_at=self._clock(),
            publish_token=new_token(),
            owner_token_hash=hash_token(owner_token),
        )
        # stored before it is indexed: a room the database refused is never shown
        self._store.save(room)
        self._index(room)
        self._notify(room)
        return room, owner_token

    def get(self, room_id: str) -> Room:
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomNotFound(room_id)
        return room

    def find(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def rooms(
        self, *, status: RoomStatus | None = None, limit: int | None = None, offset: int = 0
    ) -> list[Room]:
        """Rooms newest first, optionally filtered by status."""
        # newest insertion first, so equal timestamps keep creation order (sort is stable)
        rooms: Iterable[Room] = reversed(self._rooms.values())
        if status is not None:
            rooms = (room for room in rooms if room.status is status)
        ordered = sorted(rooms, key=lambda room: room.created_at, reverse=True)
        end = None if limit is None else offset + limit
        return ordered[offset:end]

    def counts_by_status(self) -> dict[RoomStatus, int]:
        counts = dict.fromkeys(RoomStatus, 0)
        for room in self._rooms.values():
            counts[room.status] += 1
        return counts

    def player_count(self, room_id: str) -> int:
        return len(self._players.get(room_id, ()))

    # -- authorization --------------------------------------------------------------------

    def authorize(self, room: Room, bearer: str | None, admin_token: str | None) -> None:
        """Owner token or admin token, else :class:`Unauthorized` / :class:`Forbidden`."""
        if not bearer:
            raise Unauthorized("This action needs Authorization: Bearer <owner token>")
        if room.is_owner_token(bearer):
            return
        if admin_token and hmac.compare_digest(admin_token.encode(), bearer.encode()):
            return
        raise Forbidden("The token does not grant access to this room")

    def is_owner(self, room: Room, token: str | None) -> bool:
        return bool(token) and room.is_owner_token(token or "")

    # -- lifecycle ------------------------------------------------------------------------

    def close(self, room_id: str) -> tuple[Room, str | None]:
        """End a room for good. Idempotent. Returns the publisher's client id to kick, if any.

        A room closed while its publisher is away ends at the unpublish, like one whose
        reconnect window passes: the broadcast stopped then.
        """
        room = self.get(room_id)
        if room.status is RoomStatus.ENDED:
            return room, None
        kick = room.publisher_client_id if room.status is RoomStatus.LIVE else None
        at = self._clock() if room.reconnecting_since is None else room.reconnecting_since
        self._end(room, at)
        return room, kick

    def _end(self, room: Room, at: int) -> None:
        room.status = RoomStatus.ENDED
        if room.start_time is not None:
            at = max(at, room.start_time)
        room.end_time = at
        room.reconnecting_since = None
        self._disarm_window(room)
        self._published_at.pop(room.id, None)
        if room.publisher_client_id:
            self._by_publisher.pop(room.publisher_client_id, None)
        self._changed(room)

    def _room_for_stream(self, app: str, stream: str, stream_url: str = "") -> Room | None:
        if not app and not stream and stream_url:
            parts = stream_url.strip("/").split("/")
            if len(parts) >= 2:
                app, stream = parts[-2], parts[-1]
        if app != self._app:
            return None
        return self._by_stream.get(_strip_play_extension(stream))

    def handle_hook(self, event: HookEvent) -> HookResult:
        """Dispatch one SRS callback on its action."""
        restarted = self._note_service(event.service_id)
        room: Room | None
        try:
            if event.action == "on_publish":
                room = self.on_publish(event)
            elif event.action == "on_play":
                room = self.on_play(event)
            elif event.action == "on_unpublish":
                room = self.on_unpublish(event)
            elif event.action == "on_stop":
                room = self.on_stop(event)
            else:
                room = None
        except HookRejected as exc:
            return HookResult(
                allowed=False, outcome="rejected", reason=exc.message, srs_restarted=restarted
            )
        return HookResult(
            allowed=True,
            outcome="accepted" if room is not None else "ignored",
            room=room,
            srs_restarted=restarted,
        )

    def on_publish(self, event: HookEvent) -> Room:
        """Authorize a publisher. Raises :class:`HookRejected` with the reason to refuse."""
        room = self._room_for_stream(event.app, event.stream, event.stream_url)
        if room is None:
            raise HookRejected("no room has this stream")
        token = param_token(event.param)
        if token is None or not room.is_publish_token(token):
            raise HookRejected("publish token missing or wrong")
        if room.status is RoomStatus.ENDED:
            raise HookRejected("room has ended")
        if room.status is RoomStatus.LIVE:
            if room.publisher_client_id == event.client_id and not room.reconnecting:
                return room  # a duplicated on_publish of the current publisher
            srs_restarted = (
                event.service_id is not None
                and room.publisher_service_id is not None
                and event.service_id != room.publisher_service_id
            )
            if not room.reconnecting and not srs_restarted:
                raise HookRejected("room already has a live publisher")
            # the encoder came back inside the window (an RTMP republish on the same
            # connection keeps its client id), or SRS restarted: the same broadcast goes on
            if room.publisher_client_id:
                self._by_publisher.pop(room.publisher_client_id, None)
        else:
            room.status = RoomStatus.LIVE
            room.start_time = self._clock()
        room.publisher_client_id = event.client_id
        room.publisher_service_id = event.service_id
        room.reconnecting_since = None
        self._disarm_window(room)
        self._by_publisher[event.client_id] = room
        self._published_at[room.id] = self._clock()
        self._changed(room)
        return room

    def on_unpublish(self, event: HookEvent) -> Room | None:
        """The accepted publisher left. Unknown client ids are ignored (returns None)."""
        room = self._by_publisher.get(event.client_id)
        if room is None or room.status is not RoomStatus.LIVE or room.reconnecting:
            return None
        self.publisher_gone(room)
        return room

    def publisher_gone(self, room: Room, at: int | None = None) -> None:
        """The publisher is gone (on_unpublish or reconciliation): open the window or end."""
        if room.status is not RoomStatus.LIVE or room.reconnecting:
            return
        at = self._clock() if at is None else at
        if self._window_ms <= 0:
            self._end(room, at)
            return
        room.reconnecting_since = at
        self._arm_window(room)
        self._changed(room)

    def _arm_window(self, room: Room) -> None:
        self._disarm_window(room)
        if self._scheduler is None or room.reconnecting_since is None:
            return
        due = room.reconnecting_since + self._window_ms - self._clock()
        self._timers[room.id] = self._scheduler(max(due, 0) / 1000, lambda: self.expire(room.id))

    def _disarm_window(self, room: Room) -> None:
        timer = self._timers.pop(room.id, None)
        if timer is not None:
            timer.cancel()

    def expire(self, room_id: str) -> None:
        """End a room whose reconnect window has passed; ``endTime`` is the unpublish time."""
        self._timers.pop(room_id, None)
        room = self._rooms.get(room_id)
        if room is None or room.reconnecting_since is None:
            return
        if self._clock() < room.reconnecting_since + self._window_ms:
            self._arm_window(room)
            return
        self._end(room, room.reconnecting_since)

    def on_play(self, event: HookEvent) -> Room:
        """Allow a player of a room that has not ended; count it once per client id."""
        room = self._room_for_stream(event.app, event.stream, event.stream_url)
        if room is None:
            raise HookRejected("no room has this stream")
        if room.status is RoomStatus.ENDED:
            raise HookRejected("room has ended")
        players = self._players.setdefault(room.id, set())
        if event.client_id not in players:
            self._drop_player(event.client_id)
            players.add(event.client_id)
            self._player_room[event.client_id] = room.id
            self._notify(room)
        return room

    def on_stop(self, event: HookEvent) -> Room | None:
        room_id = self._drop_player(event.client_id)
        room = self._rooms.get(room_id) if room_id else None
        if room is not None:
            self._notify(room)
        return room

    def _drop_player(self, client_id: str) -> str | None:
        room_id = self._player_room.pop(client_id, None)
        if room_id is not None:
            players = self._players.get(room_id)
            if players is not None:
                players.discard(client_id)
                if not players:
                    del self._players[room_id]
        return room_id

    def _notify(self, room: Room) -> None:
        """Announce a change that is not stored (player counts)."""
        for listener in self._listeners:
            try:
                listener(room)
            except Exception:
                log.exception("room listener failed")

    # -- reconciliation -------------------------------------------------------------------

    def _note_service(self, service_id: str | None) -> bool:
        """Remember SRS's service id; True when it changed (SRS restarted)."""
        if not service_id:
            return False
        changed = self.last_service_id is not None and service_id != self.last_service_id
        self.last_service_id = service_id
        return changed

    def service_changed(self, service_id: str | None) -> bool:
        """Whether ``service_id`` differs from the last one seen (and remember it)."""
        return self._note_service(service_id)

    def live_rooms(self) -> list[Room]:
        return [room for room in self._rooms.values() if room.status is RoomStatus.LIVE]

    def reconcile(
        self, publishing: dict[str, str | None], asked_at: int | None = None
    ) -> list[Room]:
        """Compare live rooms with what SRS reports publishing.

        ``publishing`` maps the stream names SRS has an active publisher for (in our app) to
        that publisher's client id when known; ``asked_at`` is when SRS was asked (epoch ms).
        A live room absent there loses its publisher (through the reconnect window), unless
        its publish was accepted less than the grace period before SRS was asked. Returns the
        rooms that changed.
        """
        asked_at = self._clock() if asked_at is None else asked_at
        changed = []
        for room in self.live_rooms():
            if room.stream_key in publishing or room.reconnecting:
                continue
            published_at = self._published_at.get(room.id)
            if published_at is not None and published_at > asked_at - self.publish_grace_ms:
                continue
            self.publisher_gone(room)
            changed.append(room)
        return changed

    def shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
