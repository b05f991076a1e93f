"""The web console in real headless Chromium, against a real livehub server process.

One server and one browser run for the whole module: ``console.e2e.mjs`` (playwright-core)
drives the pages through every scenario and prints a JSON report; each test below asserts on
its scenario. SRS itself does not run: ``fake_srs.py`` (aiortc) stands in for its WHIP/WHEP
endpoints and posts its hooks, and some scenarios post hooks directly the way SRS would.

``presence_both_ways`` runs against a second livehub with ``LIVEHUB_PRESENCE_LIMIT=3``, so a
few sockets cross the presence limit both ways.

Every scenario runs against a real livehub: the main one (with a fake SRS for WHIP/WHEP), and
further ones where a scenario needs a configuration of its own (API keys, one create a minute,
a presence limit of 3).

Needs ``node``, ``/usr/bin/chromium`` (Debian ``chromium``) and playwright-core from
``npm ci`` in ``tests/e2e`` (run by the tests themselves when ``node_modules`` is missing).
Screenshots land in a temporary directory; ``LIVEHUB_SCREENSHOTS=docs/screenshots`` (any
directory) keeps them, e.g. to refresh the README's pictures. ``E2E_SCENARIOS=a,b`` runs only
those scenarios of the script (the tests of the others skip), to iterate on one quickly:
``E2E_SCENARIOS=phone_layout .venv/bin/pytest -m e2e tests/e2e -k phone``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import (
    CHROMIUM,
    HERE,
    HOOK_SECRET,
    HOOKS_DIR,
    NODE,
    ROOT,
    free_port,
    install_playwright_core,
    livehub_process,
    require_browser,
    stop,
    wait_for_http,
)

pytestmark = pytest.mark.e2e

SCRIPT_TIMEOUT = 240

require_browser()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """livehub on a free port, with a fake SRS whose WHIP/WHEP URLs the rooms point to."""
    port = free_port()
    srs_port = free_port()
    hook_url = f"http://127.0.0.1:{port}/api/hooks/srs?secret={HOOK_SECRET}"
    with tempfile.TemporaryFile() as srs_log:
        srs = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "fake_srs.py"),
                "--port",
                str(srs_port),
                "--hook-url",
                hook_url,
            ],
            cwd=ROOT,
            stdout=srs_log,
            stderr=subprocess.STDOUT,
        )
        try:
            with livehub_process(
                "main",
                port,
                LIVEHUB_RECONNECT_WINDOW="0",
                LIVEHUB_PUBLIC_HOST="127.0.0.1",
                # WHIP/WHEP URLs point to the fake SRS; its HTTP API (kick, reconcile) is not
                # faked and nothing listens there, so livehub sees "SRS API unreachable" and
                # carries on.
                LIVEHUB_SRS_API_PORT=str(srs_port),
                # the scenarios create a handful of rooms from one address: stay clear of the
                # anonymous create limit
                LIVEHUB_CREATE_RATE_PER_MIN="1000",
            ) as base:
                wait_for_http(f"http://127.0.0.1:{srs_port}/", srs)
                yield base
        finally:
            stop(srs, srs_log, "fake SRS")


@pytest.fixture(scope="module")
def small_presence() -> Iterator[str]:
    """Rooms count viewers above 3 members (LIVEHUB_PRESENCE_LIMIT=3): the presence scenarios
    cross the limit both ways with a handful of sockets."""
    with livehub_process(
        "presence limit 3",
        LIVEHUB_CREATE_RATE_PER_MIN="1000",
        LIVEHUB_PRESENCE_LIMIT="3",
        LIVEHUB_VIEWER_COUNT_INTERVAL="0.05",
    ) as base:
        yield base


@pytest.fixture(scope="module")
def gated() -> Iterator[str]:
    """Creating a room needs an API key (LIVEHUB_API_KEYS): the create form's 401 and 403, and
    the rooms the list scenario pages through."""
    with livehub_process("API keys", LIVEHUB_API_KEYS="e2e-api-key-0123456789") as base:
        yield base


@pytest.fixture(scope="module")
def limited() -> Iterator[str]:
    """One anonymous create a minute per address (LIVEHUB_CREATE_RATE_PER_MIN=1): the 429."""
    with livehub_process("one create a minute", LIVEHUB_CREATE_RATE_PER_MIN="1") as base:
        yield base


@pytest.fixture(scope="module")
def report(
    server: str,
    gated: str,
    limited: str,
    small_presence: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    assert NODE is not None
    install_playwright_core()
    env = {
        **os.environ,
        "LIVEHUB_URL": server,
        "LIVEHUB_HOOK_SECRET": HOOK_SECRET,
        "CHROMIUM": CHROMIUM,
        # resolved here: the script runs in tests/e2e, the path is relative to where pytest runs
        "SCREENSHOT_DIR": str(
            Path(os.environ["LIVEHUB_SCREENSHOTS"]).resolve()
            if os.environ.get("LIVEHUB_SCREENSHOTS")
            else tmp_path_factory.mktemp("screenshots")
        ),
        "HOOKS_DIR": str(HOOKS_DIR),
        "GATED_URL": gated,
        "LIMITED_URL": limited,
        "PRESENCE_URL": small_presence,
    }
    done = subprocess.run(
        [NODE, str(HERE / "console.e2e.mjs")],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    sys.stderr.write(done.stderr[-6000:])
    assert done.returncode == 0, (
        f"console.e2e.mjs exited with {done.returncode}:\n{done.stderr[-3000:]}"
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    timings = {name: r.get("ms") for name, r in result["scenarios"].items()}
    sys.stderr.write(f"scenario times (ms): {json.dumps(timings)}\n")
    return result


SELECTED = {n.strip() for n in os.environ.get("E2E_SCENARIOS", "").split(",") if n.strip()}


def scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    if SELECTED and name not in SELECTED:
        pytest.skip(f"scenario {name} not in E2E_SCENARIOS")
    result: dict[str, Any] = report["scenarios"].get(name, {"ok": False, "error": "did not run"})
    assert result["ok"], f"{name} failed in the browser:\n{result.get('error')}"
    return result


def test_create_room_and_see_it_listed(report: dict[str, Any]) -> None:
    result = scenario(report, "create_and_list")
    assert result["rows"] >= 2


def test_two_pages_join_chat_and_see_each_other(report: dict[str, Any]) -> None:
    result = scenario(report, "members_and_chat")
    assert sorted(m["name"] for m in result["members"]) == ["alice", "bob"]


def test_one_member_is_singular_and_a_host_is_no_viewer(report: dict[str, Any]) -> None:
    # the owner alone in the room: the head counts members (hosts too), not "viewers"
    result = scenario(report, "members_and_chat")
    assert (result["alone"], result["two"]) == ("1 member", "2 members")


def test_status_badge_follows_srs_hooks(report: dict[str, Any]) -> None:
    result = scenario(report, "status_follows_srs_hooks")
    assert result["final"] == "ended"


def test_owner_goes_live_from_camera_and_viewer_watches(report: dict[str, Any]) -> None:
    result = scenario(report, "go_live_and_watch")
    assert result["player"]["width"] > 0
    assert int(result["playerCount"]) >= 1  # Bob, and Alice watching herself


def test_owner_closes_room(report: dict[str, Any]) -> None:
    scenario(report, "owner_closes_room")


def test_chat_closes_when_the_room_ends_live_and_on_reload(report: dict[str, Any]) -> None:
    # the scenario waits for chat closed on both pages after on_unpublish, and after a reload
    result = scenario(report, "status_follows_srs_hooks")
    assert result["final"] == "ended"


def test_stale_close_reply_does_not_overwrite_pushed_state(report: dict[str, Any]) -> None:
    result = scenario(report, "stale_close_reply")
    assert result["staleReply"] == 2  # the reply held back really was stale
    assert result["shown"] == result["api"] == 1


def test_players_drop_to_zero_at_the_close_and_stay_there(report: dict[str, Any]) -> None:
    # issue 20 item 7: two players counted; the close ends them, late on_stop hooks change nothing
    result = scenario(report, "stale_close_reply")
    assert result["players"] == result["apiPlayers"] == 0


def test_title_field_limits_and_messages(report: dict[str, Any]) -> None:
    result = scenario(report, "title_limits")
    assert "visible character" in result["blank"]
    assert "Length must be between 1 and 100" in result["reason"]


def test_long_title_stays_inside_the_room_table_at_1280(report: dict[str, Any]) -> None:
    result = scenario(report, "title_limits")
    card, table = result["card"], result["table"]
    assert card["left"] - 0.5 <= table["left"] and table["right"] <= card["right"] + 0.5
    assert result["rowHeight"] < 90


def test_title_field_counts_characters_like_the_api(report: dict[str, Any]) -> None:
    # issue 20 item 8: 100 emoji create a room, the field takes no 101st, the server refuses 101
    emoji = scenario(report, "title_limits")["emoji"]
    assert (emoji["typed"], emoji["afterMore"], emoji["created"]) == (100, 100, 100)
    assert "Length must be between 1 and 100" in emoji["refused"]


def test_errors_are_shown(report: dict[str, Any]) -> None:
    scenario(report, "errors_are_shown")


def test_every_page_works_on_a_390_px_phone(report: dict[str, Any]) -> None:
    # issue 20 item 1: list, create, room as owner and as viewer: none wider than the phone
    result = scenario(report, "phone_layout")
    assert set(result["widths"]) == {"list", "create", "owner", "viewer"}
    assert all(width <= 390 for width in result["widths"].values()), result["widths"]
    assert result["titles"] >= 1


def test_the_console_answers_no_call_it_did_not_ask_for(report: dict[str, Any]) -> None:
    # issue 15 item 6: an anonymous socket's offers (room-wide, and addressed to a member) open
    # no camera and no peer connection, and nothing is sent back
    steps = scenario(report, "offers_are_ignored")["steps"]
    nothing = {"getUserMedia": 0, "peerConnections": 0}
    assert steps["roomWide"] == {"media": nothing, "sent": []}
    assert steps["addressed"] == {"media": nothing, "sent": []}


def test_invite_accept_and_the_guest_is_on_every_stage(report: dict[str, Any]) -> None:
    # issue 18: nothing (no camera) until the invitee accepts; then its camera is published to
    # (fake) SRS with its own stage credentials and plays in the host's and a viewer's grid
    result = scenario(report, "stage_invite_accept")
    assert result["asked"]["getUserMedia"] == 0
    assert result["accepted"]["getUserMedia"] >= 1
    assert "alice" in result["promptText"]
    for side in ("atAlice", "atCarol"):
        assert result[side]["width"] > 0 and result[side]["frames"] >= 5, side


def test_a_stop_while_the_camera_is_asked_for_publishes_nothing(report: dict[str, Any]) -> None:
    assert scenario(report, "stop_while_the_camera_is_asked")["peerConnections"] == 0


def test_declining_opens_no_camera_and_hosts_moderate_chat(report: dict[str, Any]) -> None:
    result = scenario(report, "stage_decline_and_moderation")
    assert result["declined"]["getUserMedia"] == 0
    assert "30 s" in result["note"]


def test_private_room_opens_only_with_a_viewer_link(report: dict[str, Any]) -> None:
    result = scenario(report, "private_room_viewer_link")
    assert result["link"].endswith("token=…")


def test_stale_owner_tokens_are_forgotten_and_bounded(report: dict[str, Any]) -> None:
    # gone (404), a public room ended, a refused token: forgotten; a private ended room's
    # token (its recordings need it) and an open room's: kept
    result = scenario(report, "owner_tokens_forgotten")
    after = result["after"]
    assert (after["ended"], after["gone"], after["refused"]) == (None, None, None)
    # kept: the private room's and the open room's (both saved before the index existed)
    assert after["private"] and after["open"]
    # at most 50 rooms kept, the least recently used dropped first; 30 days unused: dropped; a
    # token saved before the index existed counts as the least recently used
    assert result["bound"] == {
        "count": 50,
        "oldestKept": False,
        "newestKept": True,
        "stale": False,
        "legacy": False,
        "bulk10": True,
        "newest": "token-new",
        "total": 50,
    }


def test_presence_both_ways_on_a_real_server(report: dict[str, Any]) -> None:
    # issue 20 items 2 and 7 against livehub itself (presence limit 3): the host's page says
    # "3 viewers and 1 host" above the limit, and lists everyone again back under it
    result = scenario(report, "presence_both_ways")
    assert result["counted"].startswith("3 viewers and 1 host")
    assert result["back"] == ["guest-1", "hana"]
    assert result["summaryHidden"] is True


# --- against further livehubs: API keys and 429 on create, paged lists, presence above the limit,
# chat refused in a room that ended unheard


def test_create_errors_401_403_and_429_with_api_key_field(report: dict[str, Any]) -> None:
    result = scenario(report, "create_needs_api_key")
    assert "needs an API key" in result["missing"] and "refused the API key" in result["refused"]
    assert re.search(r"try again in \d+ s", result["limited"]), result["limited"]


def test_list_pages_through_link_and_polls_only_active_rooms(report: dict[str, Any]) -> None:
    result = scenario(report, "list_pages_and_polls_live")
    assert result["pages"] == 3
    assert result["rows"] == int(result["last"].split()[0])


def test_member_panel_counts_viewers_above_the_presence_limit(report: dict[str, Any]) -> None:
    # issue 20 item 7: viewerCount counts hosts too; the panel says viewers without them
    result = scenario(report, "presence_counted")
    assert result["summary"].startswith("4 viewers and 1 host")
    assert result["twoHosts"].startswith("5 viewers and 2 hosts")


def test_member_panel_lists_everyone_again_back_under_the_limit(report: dict[str, Any]) -> None:
    # issue 20 item 2: presence-mode "full" carries the members: the whole list, no "not listed"
    result = scenario(report, "presence_counted")
    assert result["backToFull"] == ["ann", "sam", "vic"]


def test_chat_refused_with_room_ended_closes_chat(report: dict[str, Any]) -> None:
    scenario(report, "chat_refused_after_end")


def test_no_uncaught_page_errors(report: dict[str, Any]) -> None:
    assert report["pageErrors"] == []
