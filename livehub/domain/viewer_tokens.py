"""Viewer tokens of private rooms: standard JWTs (HS256) an application can mint itself.

Claims: ``room`` (the room id), ``exp`` (epoch seconds), optionally ``sub`` and ``name``;
signed with the UTF-8 bytes of ``LIVEHUB_VIEWER_TOKEN_SECRET``. A token opens one room: its
``GET /api/rooms/{id}``, a WebSocket ``join`` and SRS plays of its streams (main and stage),
where SRS's ``param`` carries it as ``token=``. Expired, foreign-room or badly signed tokens
open nothing. The owner and the admin are never handed a viewer token by themselves: their
views carry a freshly minted one (:data:`HOLDER_TTL`) so their players work too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jwt

from livehub.domain.errors import RoomNotFound
from livehub.domain.peer import Peer
from livehub.domain.room import Room
from livehub.domain.signaling import Signaling
from livehub.domain.srs_params import parse_param
from livehub.domain.tokens import token_bytes

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
#: seconds a token minted through the API lives by default, and at most (7 days)
DEFAULT_TTL = 3600
MAX_TTL = 7 * 24 * 3600
#: seconds the token in an owner's or admin's room view lives
HOLDER_TTL = 12 * 3600
#: the ``param`` field SRS hands on_play that carries the viewer token
PARAM_NAME = "token"


class ViewerTokens:
    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = secret.encode()
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
        try:
            claims: dict[str, Any] = jwt.decode(
                token_bytes(token),  # any str: PyJWT's own encode() raises on a surrogate
                self._key,
                algorithms=[ALGORITHM],
                # exp is checked below against the injected clock
                options={"require": ["exp", "room"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        exp = claims.get("exp")
        if claims.get("room") != room_id or not isinstance(exp, int) or exp <= self._clock():
            return None
        return claims

    def valid(self, token: str | None, room_id: str) -> bool:
        return self.claims(token, room_id) is not None

    def play_allowed(self, room: Room, param: str) -> bool:
        """The room service's check of a private room's on_play: ``token=`` in ``param``."""
        return self.valid(parse_param(param).get(PARAM_NAME), room.id)


class PrivateRooms:
    """Private rooms on the signaling channel: a ``join`` needs ``token`` (a viewer token of
    the room, or its owner token) or gets ``room_not_found``, as an unknown id; the ``joined``
    room view's play URLs carry the viewer token (a freshly minted one for the owner)."""

    def __init__(
        self,
        signaling: Signaling,
        tokens: ViewerTokens,
        room_view: Callable[[Room, str | None], dict[str, Any]],
    ) -> None:
        self._signaling = signaling
        self._tokens = tokens
        self._room_view = room_view
        signaling.join_checks.append(self._check)
        signaling.join_extras.append(self._joined)

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
        token = message.get("token")
        if not isinstance(token, str) or not self._tokens.valid(token, room.id):
            token, _ = self._tokens.mint(room.id, HOLDER_TTL)  # the owner's players need one
        return {"room": self._room_view(room, token)}
