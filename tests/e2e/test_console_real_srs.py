"""The console's stage flow against a real SRS (``../shared/srs``, WebRTC on 127.0.0.1) in
headless Chromium: invite → accept → the guest's camera published over WHIP with its own stage
credentials (SRS asks livehub with on_publish) → every page plays it over WHEP from SRS.

``real_srs.e2e.mjs`` drives the pages and prints a JSON report. Skips with the reason where
SRS, node or Chromium is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HOOK_SECRET
from tests.e2e.browser import (
    CHROMIUM,
    HERE,
    NODE,
    free_port,
    install_playwright_core,
    livehub_process,
    require_browser,
    wait_for_http,
)
from tests.real_srs import SRS_DIR, RealSRS

pytestmark = pytest.mark.e2e

require_browser()


@pytest.fixture(scope="module")
def livehub_with_srs() -> Iterator[str]:
    binary = SRS_DIR / "srs-6.0"
    if not binary.is_file():
        binary = SRS_DIR / "srs-5.0"
    if not binary.is_file():
        pytest.skip(f"real SRS not found in {SRS_DIR} (see shared/srs/README.md)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        srs = RealSRS(binary, Path(tmp), port)
        conf = Path(tmp) / "srs.conf"
        conf.write_text(srs.config())
        srs_proc = subprocess.Popen(
            [str(binary), "-c", str(conf)],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with livehub_process(
                "real SRS",
                port,
                LIVEHUB_HOOK_SECRET=HOOK_SECRET,  # the one RealSRS signs its hooks with
                LIVEHUB_RECONNECT_WINDOW="0",
                LIVEHUB_PUBLIC_HOST="127.0.0.1",
                LIVEHUB_SRS_API_URL=srs.api_url,
                LIVEHUB_SRS_API_PORT=str(srs.api_port),
                LIVEHUB_SRS_HTTP_PORT=str(srs.http_port),
                LIVEHUB_RTMP_PORT=str(srs.rtmp_port),
                LIVEHUB_CREATE_RATE_PER_MIN="1000",
            ) as base:
                wait_for_http(f"{srs.api_url}/api/v1/versions", srs_proc)
                yield base
        finally:
            srs_proc.terminate()
            try:
                srs_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srs_proc.kill()
                srs_proc.wait()


@pytest.fixture(scope="module")
def report(livehub_with_srs: str) -> dict[str, Any]:
    assert NODE is not None
    install_playwright_core()
    env = {**os.environ, "LIVEHUB_URL": livehub_with_srs, "CHROMIUM": CHROMIUM}
    done = subprocess.run(
        [NODE, str(HERE / "real_srs.e2e.mjs")],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    sys.stderr.write(done.stderr[-4000:])
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_guest_publishes_from_the_browser_to_real_srs_and_plays_everywhere(
    report: dict[str, Any],
) -> None:
    assert report["ok"], report.get("error")
    assert report["gumBeforeAccept"] == 0  # no camera before the invitee accepted
    assert report["gumAfterAccept"] >= 1
    for played in ("main", "guestAtCarol", "guestAtAlice"):
        assert report[played]["width"] > 0 and report[played]["frames"] >= 5, played
    assert report["stage"] == [{"peerId": report["gusPeer"], "live": True}]
    assert report["pageErrors"] == []
