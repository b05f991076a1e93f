"""Marshmallow schemas: separate input and output shapes, camelCase on the wire via data_key.

Client input raises on unknown fields; SRS callback bodies exclude them (SRS adds fields
between versions). The OpenAPI document is generated from these same classes.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from livehub.domain.room import RoomStatus, Visibility
from livehub.domain.srs_params import HOOK_ACTIONS
from livehub.domain.text import has_visible

TITLE_MAX = 100
#: the whitespace both Python's and JavaScript's ``\s`` match (Python's also has the C0
#: separators U+001C-U+001F and NEL, JavaScript's U+FEFF): spelled out, so that the pattern means
#: the same to livehub and to every client validating against the OpenAPI document
_SPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: a character that is no space, no control characters (C0, DEL, C1) but in the surrounding
#: whitespace, which is trimmed after validation. The OpenAPI document shows the same regex and
#: length; that the title has a *visible* character (not only format characters such as
#: U+200B, nor other invisible ones: ``livehub.domain.text``) is checked besides
#: (:class:`VisibleText`), and the document's description says so in words: no regex says it
#: the same to every client (JavaScript's without the ``u`` flag reads surrogate halves).
TITLE_PATTERN = rf"^[{_SPACE}]*[^{_SPACE}\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*[{_SPACE}]*$"
TITLE_ERROR = "Must contain a visible character and no control characters."
#: no control characters (C0, DEL, C1): text a client may show, such as a viewer token's claims
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
NO_CONTROL_ERROR = "Must not contain control characters."


class VisibleText(validate.Regexp):
    """``Regexp`` (the pattern the OpenAPI document shows), and at least one visible character
    (:func:`~livehub.domain.text.has_visible`), with the one error message."""

    def __call__(self, value: str) -> str:  # type: ignore[override]
        super().__call__(value)
        if not has_visible(value):
            raise ValidationError(self._format_error(value))
        return value


class QueryInteger(fields.Integer):
    """An integer in a query string or a path: ASCII digits, with an optional ``-``
    (``int()`` also takes `` 7``, ``+5``, ``1_000``, full-width digits and those of every
    script)."""

    _DIGITS = re.compile(r"-?[0-9]+", re.ASCII)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not self._DIGITS.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """JSON ``true`` or ``false`` only (marshmallow's Boolean also takes 0, 1, "yes", ...)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class RoomCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    title = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=TITLE_MAX),
            VisibleText(TITLE_PATTERN, error=TITLE_ERROR),
        ],
        metadata={
            "description": "Room title, at most 100 characters with at least one visible (spaces, "
            "format characters such as zero-width spaces and joiners, and other invisible "
            "characters do not count); no control characters; surrounding whitespace is trimmed"
        },
    )

    record = StrictBoolean(
        metadata={
            "description": "Keep SRS's recordings of the broadcast (default: the server's "
            "LIVEHUB_RECORD_DEFAULT, off unless set)"
        },
    )
    visibility = fields.Enum(
        Visibility,
        by_value=True,
        load_default=Visibility.PUBLIC,
        metadata={
            "description": "`private`: listed only for the admin or an API key, and seen, "
            "joined and played only with a viewer token (default `public`)"
        },
    )

    @post_load
    def _strip(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {**data, "title": data["title"].strip()}


LIST_LIMIT_MAX = 1000
LIST_LIMIT_DEFAULT = 100
#: ``<createdAt>.<id>``: the keyset position after which a page starts
CURSOR_PATTERN = r"^[0-9]{1,15}\.[A-Za-z0-9_-]{1,64}$"


class RoomListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    # no load_default=None: that would document the parameters as nullable, and a query
    # string has no null; the handler reads absent ones with .get()
    status = fields.Enum(RoomStatus, by_value=True, metadata={"description": "Only this status"})
    limit = QueryInteger(
        load_default=LIST_LIMIT_DEFAULT,
        validate=validate.Range(min=1, max=LIST_LIMIT_MAX),
        metadata={"description": f"At most this many rooms (default {LIST_LIMIT_DEFAULT})"},
    )
    visibility = fields.String(
        validate=validate.OneOf(("public", "private", "all")),
        metadata={
            "description": "`public` (default), or `private` / `all` with the admin token or "
            "an API key: private rooms are never listed otherwise"
        },
    )
    cursor = fields.String(
        validate=validate.Regexp(CURSOR_PATTERN, error="Not a cursor from a previous page."),
        metadata={
            "description": "Where the page starts: copy it from the previous page's "
            '`Link: <...>; rel="next"` (opaque)'
        },
    )


class PlayUrlsSchema(Schema):
    webrtc = fields.String(required=True)
    whep = fields.String(required=True)
    flv = fields.String(required=True)
    hls = fields.String(required=True)


class PublishSchema(Schema):
    """Publish credentials: secret, shown only to the room's owner."""

    token = fields.String(required=True)
    rtmp_url = fields.String(required=True, data_key="rtmpUrl")
    obs_server = fields.String(required=True, data_key="obsServer")
    obs_stream_key = fields.String(required=True, data_key="obsStreamKey")
    whip_url = fields.String(required=True, data_key="whipUrl")
    srt_url = fields.String(required=True, data_key="srtUrl")


class StageGuestSchema(Schema):
    """A guest on a room's stage (a co-host publishing its own stream)."""

    peer_id = fields.String(required=True, data_key="peerId")
    name = fields.String(required=True)
    stream_key = fields.String(required=True, data_key="streamKey")
    live = fields.Boolean(required=True, metadata={"description": "Publishing to SRS now"})
    play_urls = fields.Nested(PlayUrlsSchema, required=True, data_key="playUrls")


class RoomSchema(Schema):
    """A room as everyone may see it: no secrets."""

    id = fields.String(required=True)
    title = fields.String(required=True)
    stream_key = fields.String(required=True, data_key="streamKey")
    status = fields.Enum(RoomStatus, by_value=True, required=True)
    start_time = fields.Integer(allow_none=True, required=True, data_key="startTime")
    end_time = fields.Integer(allow_none=True, required=True, data_key="endTime")
    created_at = fields.Integer(required=True, data_key="createdAt")
    viewer_count = fields.Integer(required=True, data_key="viewerCount")
    player_count = fields.Integer(required=True, data_key="playerCount")
    reconnecting = fields.Boolean(required=True)
    play_urls = fields.Nested(
        PlayUrlsSchema,
        required=True,
        data_key="playUrls",
        metadata={"description": "A private room's carry the viewer token (`token=`)"},
    )
    visibility = fields.Enum(Visibility, by_value=True, required=True)
    stage = fields.List(
        fields.Nested(StageGuestSchema),
        required=True,
        metadata={"description": "The guests on stage, in the order they joined it"},
    )


class OwnerRoomSchema(RoomSchema):
    """A room as its owner sees it: with publish credentials."""

    publish = fields.Nested(PublishSchema, required=True)
    record = fields.Boolean(
        required=True, metadata={"description": "Whether the broadcast's recordings are kept"}
    )


class RoomCreatedSchema(OwnerRoomSchema):
    owner_token = fields.String(
        required=True,
        data_key="ownerToken",
        metadata={"description": "Shown once: keep it to close the room or join as host"},
    )


class CloseResultSchema(Schema):
    success = fields.Boolean(required=True)
    room = fields.Nested(RoomSchema, required=True)


class ErrorSchema(Schema):
    error = fields.String(required=True)
    code = fields.String(required=True)
    details = fields.Dict(allow_none=True, required=True)


#: SRS's server and service ids are a few characters (``vid-xxxxxxx``, 8 random ones); livehub
#: keeps them, so they are bounded
_SRS_ID = validate.Length(max=64)


class SRSHookSchema(Schema):
    """An SRS HTTP callback body (SRS 5/6). Only the fields livehub uses are declared."""

    class Meta:
        unknown = EXCLUDE

    action = fields.String(required=True, validate=validate.OneOf(HOOK_ACTIONS))
    client_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    app = fields.String(load_default="", validate=validate.Length(max=256))
    stream = fields.String(load_default="", validate=validate.Length(max=512))
    param = fields.String(load_default="", validate=validate.Length(max=4096))
    stream_url = fields.String(load_default="", validate=validate.Length(max=1024))
    service_id = fields.String(load_default=None, allow_none=True, validate=_SRS_ID)
    server_id = fields.String(load_default=None, allow_none=True, validate=_SRS_ID)
    # on_dvr: the finished file, relative to SRS's working directory
    cwd = fields.String(load_default="", validate=validate.Length(max=4096))
    file = fields.String(load_default="", validate=validate.Length(max=4096))


class SRSHeartbeatSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    server = fields.String(load_default=None, allow_none=True, validate=_SRS_ID)
    service = fields.String(load_default=None, allow_none=True, validate=_SRS_ID)


class SRSHookReplySchema(Schema):
    code = fields.Integer(required=True, metadata={"description": "0 allows, non-zero refuses"})
    msg = fields.String()


class HealthSchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(required=True)


MEMBERS_LIMIT_MAX = 1000
#: the largest offset (JavaScript's largest safe integer): a page's slice takes offset + limit,
#: which past ``sys.maxsize`` raised (a 500 for the owner) instead of being an empty page
MEMBERS_OFFSET_MAX = 2**53 - 1


class MembersQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    limit = QueryInteger(
        load_default=100,
        validate=validate.Range(min=1, max=MEMBERS_LIMIT_MAX),
        metadata={"description": "At most this many members (default 100)"},
    )
    offset = QueryInteger(
        load_default=0,
        validate=validate.Range(min=0, max=MEMBERS_OFFSET_MAX),
        metadata={"description": "Skip this many members first (join order)"},
    )


class MemberSchema(Schema):
    """A member of a room's signaling channel (one WebSocket connection)."""

    peer_id = fields.String(required=True, data_key="peerId")
    name = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(("viewer", "host")))


class MembersPageSchema(Schema):
    members = fields.List(fields.Nested(MemberSchema), required=True)
    total = fields.Integer(required=True, metadata={"description": "All members of the room"})
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class RecordingSchema(Schema):
    """A recording of a room's broadcast: one MP4 file SRS's DVR wrote (times in epoch ms)."""

    id = fields.String(required=True)
    room_id = fields.String(required=True, data_key="roomId")
    started_at = fields.Integer(required=True, data_key="startedAt")
    ended_at = fields.Integer(required=True, data_key="endedAt")
    duration_ms = fields.Integer(required=True, data_key="durationMs")
    size_bytes = fields.Integer(required=True, data_key="sizeBytes")
    url = fields.String(
        required=True,
        metadata={
            "description": "Where the MP4 is served (range requests: seekable), relative to livehub"
        },
    )


VIEWER_TOKEN_TTL_MAX = 7 * 24 * 3600


class ViewerTokenCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    ttl = fields.Integer(
        strict=True,  # a JSON integer: not 1.5 (read as 1), "60" nor 60.0
        load_default=3600,
        validate=validate.Range(min=1, max=VIEWER_TOKEN_TTL_MAX),
        metadata={"description": "Seconds the token is valid (default 3600, at most 7 days)"},
    )
    sub = fields.String(
        validate=[
            validate.Length(min=1, max=128),
            validate.Regexp(NO_CONTROL_PATTERN, error=NO_CONTROL_ERROR),
        ],
        metadata={
            "description": "The JWT `sub` claim (who the viewer is, for you); no control characters"
        },
    )
    name = fields.String(
        validate=[
            validate.Length(min=1, max=64),
            validate.Regexp(NO_CONTROL_PATTERN, error=NO_CONTROL_ERROR),
        ],
        metadata={"description": "The JWT `name` claim; no control characters"},
    )


class ViewerTokenSchema(Schema):
    token = fields.String(
        required=True,
        metadata={
            "description": "An HS256 JWT (claims `room`, `exp`, optional `sub`/`name`) signed "
            "with LIVEHUB_VIEWER_TOKEN_SECRET"
        },
    )
    expires_at = fields.Integer(
        required=True, data_key="expiresAt", metadata={"description": "Epoch milliseconds"}
    )
