"""The console under its Content-Security-Policy in real headless Chromium (issue 15): the
lobby and a live room's page (its player calling WHEP on SRS's origin) cause no violation,
and the policy holds: a fetch to another origin, an inserted inline script and a frame of
the console from another page (at ``/`` or as ``/static/index.html``) are refused. Markup that
other users control (a room title, a display name, a chat line, a room id in the URL) renders
as text and runs nothing. livehub runs as deployed: hooks on
LIVEHUB_INTERNAL_PORT. ``csp.e2e.mjs`` drives the browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import (
    CHROMIUM,
    HERE,
    HOOK_SECRET,
    HOOKS_DIR,
    NODE,
    free_port,
    install_playwright_core,
    livehub_process,
    require_browser,
)

pytestmark = pytest.mark.e2e

require_browser()


@pytest.fixture(scope="module")
def csp_report() -> Iterator[dict[str, Any]]:
    assert NODE is not None
    internal, srs_api = free_port(), free_port()
    install_playwright_core()
    with livehub_process(
        "CSP",
        LIVEHUB_INTERNAL_PORT=str(internal),
        LIVEHUB_RECONNECT_WINDOW="0",
        LIVEHUB_PUBLIC_HOST="127.0.0.1",
        LIVEHUB_SRS_API_PORT=str(srs_api),  # WHEP: nothing listens, the browser still asks
    ) as base:
        done = subprocess.run(
            [NODE, str(HERE / "csp.e2e.mjs")],
            cwd=HERE,
            env={
                **os.environ,
                "LIVEHUB_URL": base,
                "INTERNAL_URL": f"http://127.0.0.1:{internal}",
                "LIVEHUB_HOOK_SECRET": HOOK_SECRET,
                "HOOKS_DIR": str(HOOKS_DIR),
                "CHROMIUM": CHROMIUM,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        sys.stderr.write(done.stderr[-4000:])
        assert done.returncode == 0, done.stderr[-3000:]
        yield json.loads(done.stdout.strip().splitlines()[-1])


def test_the_console_runs_without_a_csp_violation(csp_report: dict[str, Any]) -> None:
    assert csp_report["pageErrors"] == []
    assert csp_report["renderedTitle"] is True
    assert csp_report["whepRequested"] is True  # the player asked SRS's origin (connect-src)
    assert csp_report["violations"] == []
    assert not [e for e in csp_report["consoleErrors"] if "Content Security Policy" in e]


def test_the_policy_refuses_other_origins_and_inline_scripts(csp_report: dict[str, Any]) -> None:
    enforced = csp_report["enforced"]
    directives = {v["directive"] for v in enforced["violations"]}
    assert "connect-src" in directives, enforced
    # an inline script: its text refused by Trusted Types, and the script, put in around the
    # setter, refused all the same (by Trusted Types or script-src)
    assert enforced["inlineTextRefused"] is True
    assert directives & {"script-src-elem", "require-trusted-types-for"}, enforced
    assert enforced["inlineRan"] is False
    assert enforced["innerHtmlRefused"] is True  # Trusted Types


def test_another_page_cannot_frame_the_console(csp_report: dict[str, Any]) -> None:
    assert csp_report["framedLoaded"] is False
    assert any("frame-ancestors" in text for text in csp_report["frameErrors"]), csp_report


def test_the_page_under_static_cannot_be_framed_either(csp_report: dict[str, Any]) -> None:
    """/static/index.html is the console too; it was served without the policy and framable."""
    assert csp_report["framedStaticLoaded"] is False


def test_markup_from_other_users_renders_as_text_and_runs_nothing(
    csp_report: dict[str, Any],
) -> None:
    xss = csp_report["xss"]
    evil = xss["evil"]
    assert xss["created"] is True
    for where in ("lobby", "room", "notFound"):
        seen = xss[where]
        assert seen["injected"] == 0, (where, seen)
        assert seen["ran"] is None, (where, seen)
        # an injected handler or script would be reported even where the policy stopped it
        assert not [v for v in seen["violations"] if v.startswith("script-src")], (where, seen)
    assert xss["lobby"]["title"] == f"t {evil}"
    room = xss["room"]
    assert room["title"] == f"t {evil}" and room["documentTitle"] == f"livehub · t {evil}"
    assert room["chatName"] == xss["evilName"] and room["chatText"] == evil
    assert xss["evilName"] in room["members"]
    assert evil in xss["notFound"]["text"]
