"""The room service: the one entry point to rooms, over a :class:`RoomStore`.

:class:`RoomService` is the registry (create, get, page, count, authorize) and the one entry
point the API, the signaling and the background tasks call; what it does is in the modules of
its nouns:

- :mod:`livehub.domain.lifecycle`: the rules (preparing → live → reconnecting → ended), as
  decisions on a room, without I/O;
- :mod:`livehub.domain.changes`: read → decide → conditional write on the room's ``version``
  (the store is the source of truth, so processes sharing a database agree), and the listeners
  that hear about writes;
- :mod:`livehub.domain.hooks`: SRS's callbacks (on_publish, on_unpublish, on_play, on_stop);
- :mod:`livehub.domain.windows`: the local timers that end a room when its reconnect window
  passes in the process that opened it;
- :mod:`livehub.domain.sweep`: the periodic sweep (windows due whoever opened them, the
  preparing TTL, the retention of ended rooms);
- :mod:`livehub.domain.reconciliation`: hooks can be lost, so what SRS's API lists wins
  (publishers and players SRS no longer lists, after :data:`PUBLISH_GRACE`; players a
  registry lost).

Player counts sit behind :class:`PlayerCounts`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar, cast

from livehub.domain import lifecycle
from livehub.domain.changes import RoomChanges, RoomListener
from livehub.domain.errors import Forbidden, RoomNotFound, TooManyRooms, Unauthorized
from livehub.domain.hooks import (
    HookResult,
    Kicker,
    OriginOf,
    PlayAllowed,
    Publisher,
    SrsHooks,
    live_publisher,
    never_lost,
    no_origin,
)
from livehub.domain.lifecycle import Decision, OriginLost
from livehub.domain.reconciliation import (
    PUBLISH_GRACE,
    LostPlayers,
    reconcile_publishers,
    restore_players,
)
from livehub.domain.room import (
    EventType,
    ListedRoom,
    Room,
    RoomEvent,
    RoomStatus,
    Visibility,
    now_ms,
)
from livehub.domain.srs_params import HookEvent
from livehub.domain.store import Cursor, PlayerCounts, RoomStore
from livehub.domain.sweep import Sweep
from livehub.domain.tokens import hash_token, new_room_id, new_token, same_token
from livehub.domain.windows import ReconnectWindows, Scheduler

log = logging.getLogger(__name__)


class _NotOpen:
    """Stands for an engine until the app opens it: any use is a programming error."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the {self._what} is not open yet")


_NOT_OPEN = cast(RoomStore, _NotOpen("room store"))
_NO_PLAYERS = cast(PlayerCounts, _NotOpen("player counts"))
_T = TypeVar("_T")
#: seconds a creation refused for :class:`TooManyRooms` is told to wait (rooms end when their
#: owners close them or their streams stop: minutes, not seconds)
TOO_MANY_ROOMS_RETRY_AFTER = 60


def deny(room: Room, bearer: str | None, needs: str) -> NoReturn:
    """Refuse a caller who holds no token granting an action on ``room``: a private room is
    :class:`RoomNotFound` (the same answer as an unknown id), a public one
    :class:`Unauthorized` (``needs``: which header) without a token, else :class:`Forbidden`."""
    if room.private:
        raise RoomNotFound(room.id)
    if not bearer:
        raise Unauthorized(needs)
    raise Forbidden("The token does not grant access to this room")


class RoomService:
    """The room registry, and the entry point to the lifecycle: it composes the changes, the
    SRS callbacks, the reconnect windows, the sweep and reconciliation (module docstring)."""

    def __init__(
        self,
        store: RoomStore | None,
        *,
        players: PlayerCounts | None = None,
        app: str = "live",
        reconnect_window: float = 30.0,
        publish_grace: float = PUBLISH_GRACE,
        preparing_ttl: float = 0.0,
        ended_retention: float = 0.0,
        scheduler: Scheduler | None = None,
        kick: Kicker | None = None,
        origin_of: OriginOf = no_origin,
        origin_lost: OriginLost = never_lost,
        play_allowed: PlayAllowed | None = None,
        max_open_rooms: int = 0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """``max_open_rooms``: rooms not ended the service may hold (0: no limit); the store
        counts them in the creation's transaction, so every process sharing it is bound."""
        self._app = app
        self.max_open_rooms = max_open_rooms
        self._window_ms = int(reconnect_window * 1000)
        self.publish_grace_ms = int(publish_grace * 1000)
        self._kick = kick
        self._origin_of = origin_of
        #: whether a publisher's SRS origin is known to be down (the stage's rule uses it too)
        self.origin_lost = origin_lost
        self._clock = clock
        self._sweep = Sweep(
            window_ms=self._window_ms,
            preparing_ttl_ms=int(preparing_ttl * 1000),
            retention_ms=int(ended_retention * 1000),
            clock=clock,
        )
        self._windows = ReconnectWindows(scheduler, self._window_ms, self.expire, clock)
        self._changes = RoomChanges(
            store if store is not None else _NOT_OPEN, after_write=self._windows.follow
        )
        self._hooks = SrsHooks(
            self._changes,
            players if players is not None else _NO_PLAYERS,
            app=app,
            window_ms=self._window_ms,
            origin_of=origin_of,
            origin_lost=origin_lost,
            play_allowed=play_allowed,
            clock=clock,
        )
        self._lost_players = LostPlayers()
        self._last_created = 0

    @property
    def store(self) -> RoomStore:
        return self._changes.store

    @property
    def players(self) -> PlayerCounts:
        return self._hooks.players

    @property
    def play_allowed(self) -> PlayAllowed | None:
        """Whether a private room's player may play (None: no private room may be played)."""
        return self._hooks.play_allowed

    @property
    def app(self) -> str:
        """The SRS app livehub's streams are published in."""
        return self._app

    def origin_of(self, server_id: str | None) -> str | None:
        """The name of the configured SRS origin a hook's ``server_id`` belongs to."""
        return self._origin_of(server_id)

    def use(self, store: RoomStore, players: PlayerCounts | None = None) -> None:
        """Use ``store`` (and ``players``, when given) from now on: the app's engines
        (``livehub.engines``) open them in a cleanup context. Until then (or without players
        given to the constructor) using either is a programming error."""
        self._changes.store = store
        if players is not None:
            self._hooks.players = players

    def local_writes(self) -> tuple[int, int]:
        """This process's room writes: how many started, and how many are not yet told to the
        listeners (a reader telling changes it missed must not take these for them)."""
        return self._changes.writes_started, self._changes.writing

    def subscribe(self, listener: RoomListener) -> None:
        """``listener(room)`` after every lifecycle change, and player count change."""
        self._changes.subscribe(listener)

    def subscribe_quiet(self, listener: RoomListener) -> None:
        """``listener(room)`` after every write :meth:`update` makes (those the room listeners
        do not hear): caches of rooms keep up with them."""
        self._changes.subscribe_quiet(listener)

    # -- registry -------------------------------------------------------------------------

    async def create(
        self, title: str, visibility: Visibility = Visibility.PUBLIC, *, record: bool = False
    ) -> tuple[Room, str]:
        """Create a room; returns it with the owner token (only its hash is kept).
        :class:`TooManyRooms` (nothing written) when the service holds ``max_open_rooms``."""
        owner_token = new_token()
        room_id = new_room_id()
        # creation times are unique in this process, so newest-first is creation order even
        # for rooms created within one millisecond (ids break ties between processes)
        now = self._last_created = max(self._clock(), self._last_created + 1)
        room = Room(
            id=room_id,
            title=title,
            stream_key=f"stream-{room_id}",
            created_at=now,
            publish_token=new_token(),
            owner_token_hash=hash_token(owner_token),
            record=record,
            visibility=visibility,
        )
        created = RoomEvent(type=EventType.ROOM_CREATED, room_id=room_id, at=now)
        if not await self.store.insert(room, [created], max_open=self.max_open_rooms):
            raise TooManyRooms(self.max_open_rooms, retry_after=TOO_MANY_ROOMS_RETRY_AFTER)
        self._changes.notify(room)
        return room, owner_token

    async def get(self, room_id: str) -> Room:
        room = await self.store.get(room_id)
        if room is None:
            raise RoomNotFound(room_id)
        return room

    async def page(
        self,
        status: RoomStatus | None,
        limit: int,
        after: Cursor | None = None,
        visibility: Visibility | None = None,
    ) -> list[Room]:
        """Rooms newest first (by creation time, then id), optionally of one status."""
        return await self.store.page(status, limit, after, visibility)

    async def render_page(
        self,
        status: RoomStatus | None,
        limit: int,
        after: Cursor | None,
        render: Callable[[list[ListedRoom]], _T],
        visibility: Visibility | None = None,
    ) -> _T:
        """``render`` of the rows of :meth:`page`'s rooms, off the event loop where the store
        can (``RoomStore.render_page``)."""
        return await self.store.render_page(status, limit, after, render, visibility)

    async def count(
        self, status: RoomStatus | None = None, visibility: Visibility | None = None
    ) -> int:
        return await self.store.count(status, visibility)

    async def live_rooms(self) -> list[Room]:
        return await self.store.live()

    def player_count(self, room_id: str, status: RoomStatus | str | None = None) -> int:
        """SRS players counted in a room; 0 once the room (of ``status``) has ended: its
        players are cut off with it, whatever ``on_stop`` hooks SRS still sends (SRS times its
        old sessions out, which can take a minute)."""
        if status == RoomStatus.ENDED:
            return 0
        return self.players.count(room_id)

    # -- authorization --------------------------------------------------------------------

    def authorize(self, room: Room, bearer: str | None, admin_token: str | None) -> None:
        """Owner token or admin token. Else a private room is :class:`RoomNotFound`, as an
        unknown id: it does not exist for anyone else (``GET /api/rooms/{id}``'s rule), and a
        401 or 403 would tell that it does; a public room is :class:`Unauthorized` (no token)
        or :class:`Forbidden`."""
        if bearer and (
            room.is_owner_token(bearer) or (admin_token and same_token(bearer, admin_token))
        ):
            return
        deny(room, bearer, "This action needs Authorization: Bearer <owner token>")

    def is_owner(self, room: Room, token: str | None) -> bool:
        return bool(token) and room.is_owner_token(token or "")

    # -- conditional changes --------------------------------------------------------------

    async def update(self, room_id: str, decide: Decision) -> tuple[Room, bool]:
        """A change that is no lifecycle change (the stage, moderation): read → decide →
        conditional write like every change, without telling the room listeners (members
        hear what the caller sends). Returns the room as stored and whether it changed."""
        room, changed = await self._changes.change(await self.get(room_id), decide, notify=False)
        if room is None:  # deleted meanwhile (retention)
            raise RoomNotFound(room_id)
        return room, changed

    # -- lifecycle ------------------------------------------------------------------------

    async def close(self, room_id: str) -> Room:
        """End a room for good and kick its publisher from SRS. Idempotent.

        A room closed while its publisher is away ends at the unpublish, like one whose
        reconnect window passes: the broadcast stopped then.
        """
        kick: list[Publisher] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            kick.clear()
            publisher = live_publisher(room)
            events = lifecycle.close(room, self._clock)
            if events is not None and publisher is not None:
                kick.append(publisher)
            return events

        room, changed = await self._changes.change(await self.get(room_id), decide)
        if room is None:  # deleted meanwhile (retention)
            raise RoomNotFound(room_id)
        if changed and kick and self._kick is not None:
            log.info("room %s closed: kicking its publisher", room.id)
            self._kick(kick[0])
        return room

    async def handle_hook(self, event: HookEvent) -> HookResult:
        """Answer one SRS callback (:class:`~livehub.domain.hooks.SrsHooks`)."""
        return await self._hooks.handle(event)

    async def publisher_gone(self, room_id: str, at: int | None = None) -> Room | None:
        stored, changed = await self._changes.change(
            await self.store.get(room_id),
            lambda room: lifecycle.publisher_gone(room, at, self._window_ms, self._clock),
        )
        return stored if changed else None

    async def expire(self, room_id: str) -> Room | None:
        """End a room whose reconnect window has passed; ``endTime`` is the unpublish time."""

        room = await self.store.get(room_id)
        stored, changed = await self._changes.change(
            room, lambda room: lifecycle.expire(room, self._window_ms, self._clock)
        )
        if stored is not None and not changed and stored.reconnecting:
            self._windows.arm(stored)  # early (a stray timer): wait for the deadline
        return stored if changed else None

    async def append_events(self, events: Sequence[RoomEvent]) -> None:
        """Report events that change no room (viewers, hosts) to the webhook outbox."""
        await self.store.append_events(events)

    # -- housekeeping ---------------------------------------------------------------------

    async def sweep(self) -> list[Room]:
        """End what is due: reconnect windows that passed (opened by any process), and rooms
        preparing longer than the TTL; delete ended rooms older than the retention. Returns
        the rooms ended."""
        return await self._sweep.run(self.store, self.expire, self._changes.change)

    async def rearm(self) -> None:
        """Arm local timers for the reconnect windows open in the store (start-up)."""
        for room in await self.store.live():
            if room.reconnecting:
                self._windows.arm(room)

    # -- reconciliation -------------------------------------------------------------------

    async def reconcile(
        self,
        publishing: dict[str, str | None],
        asked_at: int | None = None,
        answered: Callable[[Room], bool] | None = None,
    ) -> list[Room]:
        """Compare live rooms with what SRS reports publishing
        (:func:`~livehub.domain.reconciliation.reconcile_publishers`); the rooms that changed."""
        return await reconcile_publishers(
            self._changes,
            publishing,
            asked_at=self._clock() if asked_at is None else asked_at,
            answered=answered,
            grace_ms=self.publish_grace_ms,
            window_ms=self._window_ms,
            clock=self._clock,
        )

    async def restore_players(self, players: dict[str, str]) -> int:
        """Count SRS's players again (:func:`~livehub.domain.reconciliation.restore_players`);
        how many were counted."""
        return await restore_players(self._changes, self.players, players)

    async def forget_lost_players(
        self, counted: dict[str, str], listed: dict[str, str], asked_at: int
    ) -> int:
        """Forget the players SRS no longer lists
        (:class:`~livehub.domain.reconciliation.LostPlayers`); how many were forgotten."""
        return await self._lost_players.forget(
            self._changes,
            self.players,
            counted,
            listed,
            asked_at=asked_at,
            grace_ms=self.publish_grace_ms,
        )

    def service_changed(self, service_id: str | None, server_id: str | None = None) -> bool:
        """Whether ``service_id`` differs from the last one seen from the SRS ``server_id``
        (and remember it)."""
        return self._hooks.srs_restarted(service_id, server_id)

    def shutdown(self) -> None:
        self._windows.shutdown()
