"""Viewer tokens: standard HS256 JWTs, valid for one room until ``exp`` (by the injected
clock), refused when forged, foreign, expired or malformed; SRS's ``param`` in its shapes."""

from __future__ import annotations

import time

import jwt
import pytest

from livehub.domain.room import Room, Visibility
from livehub.domain.viewer_tokens import ViewerTokens

SECRET = "a-viewer-token-secret-of-32-bytes-or-more"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def room(room_id: str = "room1") -> Room:
    return Room(
        id=room_id,
        title="t",
        stream_key=f"stream-{room_id}",
        created_at=0,
        publish_token="p",
        owner_token_hash="h",
        visibility=Visibility.PRIVATE,
    )


def test_minted_tokens_are_plain_jwts_valid_until_exp() -> None:
    clock = Clock(1_800_000_000.0)
    tokens = ViewerTokens(SECRET, clock=clock)
    token, expires_at = tokens.mint("room1", 60, sub="u1", name="Ada")
    assert expires_at == 1_800_000_060_000
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"room": "room1", "exp": 1_800_000_060, "sub": "u1", "name": "Ada"}
    assert tokens.valid(token, "room1")
    assert not tokens.valid(token, "room2")
    clock.now += 59.5
    assert tokens.valid(token, "room1")
    clock.now += 0.5
    assert not tokens.valid(token, "room1")  # exp is exclusive


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not.a.jwt",
        "x" * 5000,
        jwt.encode({"room": "room1", "exp": 2_000_000_000}, "another-secret-of-32-bytes-or-more!"),
        jwt.encode({"room": "room1"}, SECRET),  # no exp
        jwt.encode({"exp": 2_000_000_000}, SECRET),  # no room
        jwt.encode({"room": "room1", "exp": "soon"}, SECRET),
        jwt.encode({"room": "room1", "exp": 2_000_000_000}, SECRET * 2, algorithm="HS512"),
    ],
)
def test_what_is_not_a_valid_token(token: str | None) -> None:
    tokens = ViewerTokens(SECRET, clock=Clock(1_800_000_000.0))
    assert not tokens.valid(token, "room1")


def test_an_application_mints_its_own_with_the_secret() -> None:
    tokens = ViewerTokens(SECRET, clock=Clock(1_800_000_000.0))
    own = jwt.encode({"room": "room1", "exp": 1_800_000_100}, SECRET.encode(), algorithm="HS256")
    assert tokens.valid(own, "room1")


@pytest.mark.parametrize(
    "param",
    ["?token={t}", "token={t}", "app=live&stream=stream-room1&token={t}", "?x=1&token={t}#frag"],
)
def test_on_play_reads_the_token_from_every_param_shape(param: str) -> None:
    tokens = ViewerTokens(SECRET, clock=Clock(1_800_000_000.0))
    token, _ = tokens.mint("room1")
    assert tokens.play_allowed(room(), param.format(t=token))
    assert not tokens.play_allowed(room("room2"), param.format(t=token))
    assert not tokens.play_allowed(room(), param.format(t="nope"))


def test_during_a_rotation_tokens_of_every_secret_are_valid_new_ones_use_the_first() -> None:
    old = "the-old-viewer-token-secret-of-32-bytes"
    tokens = ViewerTokens(SECRET, old_secrets=(old,), clock=Clock(1_800_000_000.0))
    token, _ = tokens.mint("room1")
    assert jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    by_old = jwt.encode({"room": "room1", "exp": 1_800_000_100}, old, algorithm="HS256")
    assert tokens.valid(token, "room1") and tokens.valid(by_old, "room1")
    assert not tokens.valid(by_old, "room2")  # the old secret's tokens still open one room
    expired = jwt.encode({"room": "room1", "exp": 1_800_000_000}, old, algorithm="HS256")
    assert not tokens.valid(expired, "room1")
    unknown = jwt.encode({"room": "room1", "exp": 1_800_000_100}, "u" * 40, algorithm="HS256")
    assert not tokens.valid(unknown, "room1")
    assert not ViewerTokens(SECRET, clock=Clock(1_800_000_000.0)).valid(by_old, "room1")


def test_a_minting_clock_a_little_ahead_is_allowed_for() -> None:
    """An application minting its own tokens (with ``iat``, as Node's jsonwebtoken adds, or
    ``nbf``) on a machine whose clock is up to a minute ahead: its fresh token is valid at
    once. One from further in the future is not valid yet."""
    tokens = ViewerTokens(SECRET, clock=time.time)
    now = int(time.time())
    for claim in ("iat", "nbf"):
        ahead = jwt.encode({"room": "room1", "exp": now + 3600, claim: now + 30}, SECRET)
        assert tokens.valid(ahead, "room1"), claim
        future = jwt.encode({"room": "room1", "exp": now + 3600, claim: now + 600}, SECRET)
        assert not tokens.valid(future, "room1"), claim
