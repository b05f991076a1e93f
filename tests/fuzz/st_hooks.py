"""Schemathesis hooks and checks for ``tests/fuzz`` (``st run`` loads this file through
``SCHEMATHESIS_HOOKS``; the test passes the seeded rooms and secrets in the environment).

- ``flatmap_case`` steers a share of the generated cases to what random data never finds: a
  real room id (with no token, its owner's, another owner's, or the admin token) and the right
  hook secret, so the owner view, closing and hook handling are fuzzed too, not only 403/404.
- ``no_secret_leak`` fails any response carrying a secret it should not: the hook secret and
  the admin token never; owner and publish tokens only in a creation reply (its own) or in a
  GET of a room by its owner.
- ``filter_case`` leaves out positive cases creating a room whose title has no visible
  character (only format characters such as U+200B, or other invisible ones): the document's
  pattern cannot say "visible" the same to every client, so its description says it in words,
  and livehub refuses such a title although the pattern matches it (livehub/api/schemas.py).
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

from livehub.domain.text import has_visible

Case = schemathesis.Case[Any]

ROOMS: list[dict[str, str]] = json.loads(os.environ.get("LIVEHUB_FUZZ_ROOMS", "[]"))
HOOK_SECRET = os.environ.get("LIVEHUB_FUZZ_HOOK_SECRET", "")
ADMIN_TOKEN = os.environ.get("LIVEHUB_FUZZ_ADMIN_TOKEN", "")
ROOM_PATHS = ("/api/rooms/{roomId}", "/api/rooms/{roomId}/close")


def _with_room(case: Case, room: dict[str, str], bearer: str | None) -> Any:
    # assign (not mutate) so schemathesis re-validates whether the case is still "negative"
    case.path_parameters = {**case.path_parameters, "roomId": room["id"]}
    headers = case.headers.copy()
    if bearer is None:
        headers.pop("Authorization", None)
    else:
        headers["Authorization"] = f"Bearer {bearer}"
    case.headers = headers
    return case


def _signed(case: Case) -> Any:
    case.query = {**case.query, "secret": HOOK_SECRET}
    return case


def _signed_heartbeat(case: Case) -> Any:
    case.path_parameters = {**case.path_parameters, "secret": HOOK_SECRET}
    return case


@schemathesis.hook
def flatmap_case(context: schemathesis.HookContext, case: Case) -> Any:
    path = case.operation.path
    if path in ROOM_PATHS and ROOMS:
        tokens = [None, ADMIN_TOKEN, *(room["ownerToken"] for room in ROOMS)]
        steered = st.builds(
            _with_room, st.just(case), st.sampled_from(ROOMS), st.sampled_from(tokens)
        )
        return st.one_of(st.just(case), steered)
    if path == "/api/hooks/srs" and HOOK_SECRET and "secret" in case.query:
        # keep a share of the generated (wrong) secrets: those must get their 403
        return st.one_of(st.just(case), st.just(case).map(_signed))
    if path == "/api/hooks/srs/heartbeat/{secret}" and HOOK_SECRET:
        return st.one_of(st.just(case), st.just(case).map(_signed_heartbeat))
    return st.just(case)


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: Case) -> bool:
    if (case.method.upper(), case.operation.path) != ("POST", "/api/rooms"):
        return True
    if not case.meta or not case.meta.generation.mode.is_positive:
        return True
    title = case.body.get("title") if isinstance(case.body, dict) else None
    return not isinstance(title, str) or has_visible(title)


@schemathesis.check
def no_secret_leak(ctx: schemathesis.CheckContext, response: Any, case: Case) -> None:
    text = response.text
    for name, secret in (("hook secret", HOOK_SECRET), ("admin token", ADMIN_TOKEN)):
        if secret and secret in text:
            raise AssertionError(f"the {name} is in the response")
    method, path = case.method.upper(), case.operation.path
    shown: set[str] = set()
    if response.status_code == 201 and (method, path) == ("POST", "/api/rooms"):
        return  # a new room's own secrets, not the seeded ones
    if response.status_code == 200 and (method, path) == ("GET", "/api/rooms/{roomId}"):
        body = json.loads(text)
        if "publish" in body:
            bearer = case.headers.get("Authorization", "")
            owner = next((room for room in ROOMS if room["id"] == body["id"]), None)
            if owner is None or bearer != f"Bearer {owner['ownerToken']}":
                raise AssertionError("publish credentials shown without the owner's token")
            shown.add(owner["publishToken"])
    for room in ROOMS:
        if room["ownerToken"] in text:
            raise AssertionError(f"the owner token of room {room['id']} is in the response")
        if room["publishToken"] in text and room["publishToken"] not in shown:
            raise AssertionError(f"the publish token of room {room['id']} is in the response")
