"""Recordings: the MP4 files SRS's DVR writes of a room's broadcast, kept after the live.

A room records when it was created with ``record`` (default ``LIVEHUB_RECORD_DEFAULT``). SRS
records every published stream (``dvr_plan session``: one file per publish, closed at the
unpublish) into a directory livehub shares, and POSTs ``on_dvr`` with the file's path once the
file is complete. livehub then:

- refuses any path that is not inside its recordings directory, symlinks and ``..`` resolved
  (the file is left alone: it is not livehub's to delete);
- keeps the file as a recording of the room if the room records (one row: times, duration,
  size, the path relative to the directory), and reports ``recording.ready`` in the same
  transaction (SRS sending the hook again, even to two nodes at once: one row, one event);
- deletes it otherwise (no room has the stream, the room does not record, or it was deleted).

An encoder that reconnects inside the reconnect window publishes again: SRS writes a second
file, and the room has several recordings, listed oldest first (one session of the room). The
retention sweep deletes recordings (file and row) older than ``LIVEHUB_RECORDING_RETENTION_DAYS``
and those whose room is gone (ended rooms deleted by their own retention).

Who may read a recording is decided by :meth:`RecordingService.authorize_view`, the room's own
rule: anyone for a public room; for a private room a viewer token of that room, its owner token
or the admin token (a private room's recordings do not exist for anyone else: 404).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, cast

from livehub.domain.errors import LivehubError, RoomNotFound
from livehub.domain.room import EventType, Room, RoomEvent, now_ms
from livehub.domain.service import RoomService
from livehub.domain.srs_params import stream_of
from livehub.domain.tokens import same_token

log = logging.getLogger(__name__)

#: recordings deleted per sweep at most (what is left waits for the next sweep)
SWEEP_BATCH = 500
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class RecordingNotFound(LivehubError):
    code = "recording_not_found"

    def __init__(self, recording_id: str) -> None:
        super().__init__("Recording not found", details={"recordingId": recording_id})


class RecordingFileKept(LivehubError):
    """The file could not be deleted (permissions, a busy share): the recording is kept, and
    the retention sweep tries again."""

    code = "recording_not_deleted"

    def __init__(self, recording_id: str) -> None:
        super().__init__(
            "The recording's file could not be deleted: try again later",
            details={"recordingId": recording_id},
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recording:
    """One file of a room's broadcast. ``path`` is relative to the recordings directory."""

    id: str
    room_id: str
    started_at: int
    ended_at: int
    duration_ms: int
    size_bytes: int
    path: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileInfo:
    """What the file system says of a finished recording."""

    size_bytes: int
    #: the MP4's own duration (``mvhd``); None when the file does not tell
    duration_ms: int | None


class RecordingStore(Protocol):
    """Where recordings are kept: both room stores implement it (table ``recordings``)."""

    async def insert_recording(
        self, recording: Recording, events: Sequence[RoomEvent] = ()
    ) -> Recording:
        """Store a recording and stage ``events`` (its ``recording.ready``) in one transaction,
        each as :meth:`~livehub.domain.store.RoomStore.append_events` stages it (its room's
        ``event_seq`` moved on, its ``version`` bumped). Returns ``recording``; or, if a
        recording with the same ``path`` is stored already (SRS retried the hook, maybe to
        another node at the same time), that one, and nothing is written."""
        ...

    async def recordings_of(self, room_id: str) -> list[Recording]:
        """A room's recordings, oldest first (``started_at``, then ``id``)."""
        ...

    async def get_recording(self, recording_id: str) -> Recording | None: ...

    async def delete_recording(self, recording_id: str) -> Recording | None:
        """Delete the row; the recording it was, or None if there was none."""
        ...

    async def expired_recordings(self, ended_before: int | None, limit: int) -> list[Recording]:
        """At most ``limit`` recordings whose room no longer exists or (``ended_before`` not
        None) that ended before ``ended_before``."""
        ...


class RecordingFiles(Protocol):
    """The recordings directory (a local or shared file system)."""

    def resolve(self, cwd: str, file: str) -> str | None:
        """The path of ``file`` (as SRS names it, relative to SRS's ``cwd``) relative to the
        recordings directory, or None if it is not a file inside it."""
        ...

    def absolute(self, path: str) -> Path:
        """The file of a stored ``path`` (one :meth:`resolve` returned)."""
        ...

    async def inspect(self, path: str) -> FileInfo | None:
        """Size and duration of a file; None if it is gone."""
        ...

    async def delete(self, path: str) -> bool:
        """Delete a file; whether it existed."""
        ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class DvrOutcome:
    """What an on_dvr did: ``kept`` (a recording), ``deleted`` or ``refused`` (the path)."""

    outcome: str
    reason: str = ""
    recording: Recording | None = None


RecordingView = Callable[[Recording], dict[str, object]]


def new_recording_id() -> str:
    return "r" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(15))


class RecordingService:
    def __init__(
        self,
        rooms: RoomService,
        files: RecordingFiles,
        *,
        app: str = "live",
        retention: float = 0.0,
        view: RecordingView | None = None,
        clock: Callable[[], int] = now_ms,
        viewer_token_valid: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._rooms = rooms
        #: whether a token is a valid viewer token of a room (private rooms)
        self._viewer_token_valid = viewer_token_valid
        self.files = files
        self._app = app
        self._retention_ms = int(retention * 1000)
        #: the public view of a recording, for the ``recording.ready`` webhook
        self._view = view
        self._clock = clock

    @property
    def _store(self) -> RecordingStore:
        # both room stores keep recordings too (tests/test_recordings.py runs both)
        return cast(RecordingStore, self._rooms.store)

    async def on_dvr(
        self, *, app: str, stream: str, stream_url: str, cwd: str, file: str
    ) -> DvrOutcome:
        """SRS finished a DVR file: keep it as a recording of its room, or delete it."""
        path = self.files.resolve(cwd, file)
        if path is None:
            log.warning("on_dvr names a file outside the recordings directory: refused")
            return DvrOutcome(outcome="refused", reason="file is not in the recordings directory")
        app_name, stream_key = stream_of(app, stream, stream_url)
        room: Room | None = None
        if app_name == self._app:
            room = await self._rooms.store.get_by_stream(stream_key)
        if room is None or not room.record:
            await self.files.delete(path)
            why = "no room has this stream" if room is None else "the room does not record"
            log.info("on_dvr %s: %s, file deleted", path, why)
            return DvrOutcome(outcome="deleted", reason=why)
        info = await self.files.inspect(path)
        if info is None:
            return DvrOutcome(outcome="refused", reason="the file does not exist")
        ended = self._clock()
        duration = info.duration_ms if info.duration_ms is not None else 0
        recording = Recording(
            id=new_recording_id(),
            room_id=room.id,
            started_at=ended - duration,
            ended_at=ended,
            duration_ms=duration,
            size_bytes=info.size_bytes,
            path=path,
        )
        events: list[RoomEvent] = []
        if self._view is not None:
            ready = {"recording": self._view(recording)}
            events.append(
                RoomEvent(type=EventType.RECORDING_READY, room_id=room.id, at=ended, extra=ready)
            )
        # the row and its recording.ready in one transaction: a failure leaves neither, and the
        # same hook again (a retry, even on another node at once) finds the row kept first
        stored = await self._store.insert_recording(recording, events)
        if stored.id != recording.id:  # SRS retried the hook: the same file once
            return DvrOutcome(outcome="kept", recording=stored)
        log.info("room %s: recording %s kept (%d ms)", room.id, recording.id, duration)
        return DvrOutcome(outcome="kept", recording=recording)

    # -- reads and deletes ----------------------------------------------------------------

    def may_view(self, room: Room, token: str | None, admin_token: str | None) -> bool:
        """Whether recordings of ``room`` may be listed or played with ``token``: the room's
        own rule (anyone for a public room; a viewer, owner or admin token for a private one)."""
        if not room.private:
            return True
        if not token:
            return False
        if room.is_owner_token(token):
            return True
        if admin_token and same_token(token, admin_token):
            return True
        return self._viewer_token_valid is not None and self._viewer_token_valid(token, room.id)

    def authorize_view(self, room: Room, token: str | None, admin_token: str | None) -> None:
        """:meth:`may_view`, or the room does not exist for this caller (404, as the room)."""
        if not self.may_view(room, token, admin_token):
            raise RoomNotFound(room.id)

    async def of_room(
        self, room_id: str, bearer: str | None, admin_token: str | None
    ) -> list[Recording]:
        room = await self._rooms.get(room_id)
        self.authorize_view(room, bearer, admin_token)
        return await self._store.recordings_of(room.id)

    async def get(self, recording_id: str) -> tuple[Recording, Room]:
        recording = await self._store.get_recording(recording_id)
        room = None if recording is None else await self._rooms.store.get(recording.room_id)
        if recording is None or room is None:
            raise RecordingNotFound(recording_id)
        return recording, room

    async def readable(
        self, recording_id: str, bearer: str | None, admin_token: str | None
    ) -> tuple[Recording, Path]:
        """A recording anyone allowed to see its room may play, and its file."""
        recording, room = await self.get(recording_id)
        if not self.may_view(room, bearer, admin_token):
            raise RecordingNotFound(recording_id)  # not there for this caller
        file = self.files.absolute(recording.path)
        if not file.is_file():
            raise RecordingNotFound(recording_id)
        return recording, file

    async def delete(self, recording_id: str, bearer: str | None, admin_token: str | None) -> None:
        """Delete a recording, file and row: by the room's owner or the admin."""
        recording, room = await self.get(recording_id)
        self._rooms.authorize(room, bearer, admin_token)
        if not await self._remove(recording):
            raise RecordingFileKept(recording_id)

    async def _remove(self, recording: Recording) -> bool:
        """The file, then the row: a file that cannot be deleted keeps its row (the next sweep
        tries again; nothing is left on disk that no row names). False if it could not."""
        try:
            await self.files.delete(recording.path)  # a file gone already is deleted
        except OSError as exc:
            log.warning("recording %s: its file could not be deleted: %s", recording.id, exc)
            return False
        await self._store.delete_recording(recording.id)
        return True

    async def sweep(self, now: int | None = None) -> int:
        """Delete what the retention says is old (at ``now``, epoch ms; default the clock), and
        recordings of deleted rooms (file and row). Returns how many."""
        now = self._clock() if now is None else now
        before = now - self._retention_ms if self._retention_ms > 0 else None
        deleted = 0
        for recording in await self._store.expired_recordings(before, SWEEP_BATCH):
            if await self._remove(recording):
                deleted += 1
        if deleted:
            log.info("deleted %d recordings (retention, or their room is gone)", deleted)
        return deleted
