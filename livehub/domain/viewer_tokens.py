"""Viewer tokens of private rooms: standard JWTs (HS256) an application can mint itself.

Claims: ``room`` (the room id), ``exp`` (epoch seconds), optionally ``sub`` and ``name``;
signed with the UTF-8 bytes of ``LIVEHUB_VIEWER_TOKEN_SECRET``. During a rotation
(``new,old``) tokens are signed with the first secret and a token signed with any of them is
accepted: links handed out before still work until they expire. A token opens one room: its
``GET /api/rooms/{id}``, a WebSocket ``join`` and SRS plays of its streams (main and stage),
where SRS's ``param`` carries it as ``token=``. Expired, foreign-room or badly signed tokens
open nothing. The owner and the admin are never handed a viewer token by themselves: their
views carry a freshly minted one (:data:`HOLDER_TTL`) so their players work too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jwt

from livehub.domain.errors import RoomNotFound
from livehub.domain.peer import Peer
from livehub.domain.room import Room
from livehub.domain.signaling import Signaling
from livehub.domain.srs_params import parse_param
from livehub.domain.tokens import hash_token, token_bytes

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
#: seconds a token minted through the API lives by default, and at most (7 days)
DEFAULT_TTL = 3600
MAX_TTL = 7 * 24 * 3600
#: seconds the token in an owner's or admin's room view lives
HOLDER_TTL = 12 * 3600
#: the ``param`` field SRS hands on_play that carries the viewer token
PARAM_NAME = "token"
#: seconds a token's ``nbf`` or ``iat`` may lie ahead of this clock: the application that
#: mints its own tokens runs on another machine, whose clock may be a little ahead
CLOCK_SKEW = 60


class ViewerTokens:
    def __init__(
        self,
        secret: str,
        *,
        old_secrets: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``secret`` signs and verifies; ``old_secrets`` (a rotation) only verify."""
        self._key = secret.encode()
        self._old_keys = tuple(old.encode() for old in old_secrets)
        self._clock = clock

    def mint(
        self,
        room_id: str,
        ttl: int = DEFAULT_TTL,
        *,
        sub: str | None = None,
        name: str | None = None,
    ) -> tuple[str, int]:
        """A token for ``room_id`` valid ``ttl`` seconds, and when it expires (epoch ms)."""
        exp = int(self._clock()) + ttl
        claims: dict[str, Any] = {"room": room_id, "exp": exp}
        if sub:
            claims["sub"] = sub
        if name:
            claims["name"] = name
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), exp * 1000

    def claims(self, token: str | None, room_id: str) -> dict[str, Any] | None:
        """The claims of ``token`` if it is valid now for ``room_id``; None otherwise."""
        if not token or len(token) > 4096:
            return None
        raw = token_bytes(token)  # any str: PyJWT's own encode() raises on a surrogate
        claims: dict[str, Any] | None
        try:
            claims = self._decode(raw, self._key)
        except jwt.InvalidSignatureError:
            claims = self._decode_old(raw)
        except jwt.PyJWTError:
            return None
        if claims is None:
            return None
        if claims.get("room") != room_id or not _before(claims.get("exp"), self._clock()):
            return None
        return claims

    @staticmethod
    def _decode(token: bytes, key: bytes) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            # exp is checked by the caller against the injected clock
            options={"require": ["exp", "room"], "verify_exp": False},
            leeway=CLOCK_SKEW,  # for nbf and iat, which PyJWT checks against the real clock
        )
        return claims

    def _decode_old(self, token: bytes) -> dict[str, Any] | None:
        """The claims of a token not signed with the current secret, if an old one signed it."""
        for key in self._old_keys:
            try:
                return self._decode(token, key)
            except jwt.PyJWTError:
                continue
        return None

    def valid(self, token: str | None, room_id: str) -> bool:
        return self.claims(token, room_id) is not None

    def play_allowed(self, room: Room, param: str) -> bool:
        """The room service's check of a private room's on_play: ``token=`` in ``param``."""
        return self.valid(parse_param(param).get(PARAM_NAME), room.id)


def _before(exp: object, now: float) -> bool:
    """Whether ``now`` is before ``exp``: a JWT NumericDate, which may have a fraction
    (RFC 7519, section 2: ``"exp": time.time() + 3600`` is one). A bool, a string, NaN or an
    infinity is no time."""
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return False
    # an int is compared as it is: math.isfinite() of one with 400 digits raises
    return (isinstance(exp, int) or math.isfinite(exp)) and exp > now


def ban_key(room_id: str, message: dict[str, Any]) -> str | None:
    """The kick-ban key of the token a join carries: a member of a private room is who its
    viewer token says, whatever address it comes from. A digest: bans are kept in Redis and
    in memory, where a token must not be."""
    token = message.get("token")
    if not isinstance(token, str) or not token or len(token) > 4096:
        return None
    return "token:" + hash_token(token)


class PrivateRooms:
    """Private rooms on the signaling channel: a ``join`` needs ``token`` (a viewer token of
    the room, or its owner token) or gets ``room_not_found``, as an unknown id; the ``joined``
    room view's play URLs carry the viewer token (a freshly minted one for the owner).

    A kicked member's token is banned from the room with its address (``banned`` for the kick
    ban's length, :mod:`livehub.domain.addresses`): the same token from another address does
    not come back in. Which token each member of this node joined with is kept (as its ban key)
    while it is a member; a kick is carried out on the kicked member's node, which bans it."""

    def __init__(
        self,
        signaling: Signaling,
        tokens: ViewerTokens,
        room_view: Callable[[Room, str | None], dict[str, Any]],
    ) -> None:
        self._signaling = signaling
        self._tokens = tokens
        self._room_view = room_view
        #: (room id, peer id) -> the ban key of the token a member of a private room joined with
        self._joined_with: dict[tuple[str, str], str] = {}
        signaling.join_checks.append(self._check)
        signaling.join_extras.append(self._joined)
        signaling.ban_keys.append(ban_key)
        signaling.kick_listeners.append(self._kicked)
        signaling.subscribe_presence(self._presence)

    def _kicked(self, room_id: str, peer_id: str) -> None:
        key = self._joined_with.get((room_id, peer_id))
        if key is not None and self._signaling.bans is not None:
            self._signaling.bans.ban(room_id, key)

    def _presence(self, room_id: str, peer_id: str, role: str | None, joined: bool) -> None:
        if not joined:  # a role change is a leave, then a join (whose extras record it again)
            self._joined_with.pop((room_id, peer_id), None)

    def _check(self, peer: Peer, room: Room, message: dict[str, Any], role: str) -> None:
        """A stranger (no viewer token of the room, nor its owner token) is answered as for an
        unknown id, whatever the room's state and the role asked for: ``forbidden`` or
        ``room_ended`` would tell it that a private room of that id exists. Made before the
        join's other checks (:data:`~livehub.domain.signaling.JoinCheck`)."""
        if not room.private:
            return
        token = message.get("token")
        if not isinstance(token, str) or not (
            self._tokens.valid(token, room.id) or self._signaling.rooms.is_owner(room, token)
        ):
            raise RoomNotFound(room.id)

    def _joined(self, peer: Peer, room: Room, message: dict[str, Any]) -> dict[str, Any]:
        if not room.private:
            return {}
        key = ban_key(room.id, message)
        if key is not None and peer.roles.get(room.id) != "host":
            self._joined_with[(room.id, peer.id)] = key
        token = message.get("token")
        if not isinstance(token, str) or not self._tokens.valid(token, room.id):
            token, _ = self._tokens.mint(room.id, HOLDER_TTL)  # the owner's players need one
        return {"room": self._room_view(room, token)}
