"""What the browser tests share: headless Chromium and Node found on this machine, the e2e driver's
dependencies, a livehub and a fake SRS started for a scenario run."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

HERE = Path(__file__).resolve().parent


ROOT = HERE.parents[1]


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


NODE = shutil.which("node")


HOOK_SECRET = "e2e-hook-secret-0123456789"


# SRS hook bodies as SRS sends them (tests/fixtures/srs-hooks, as in tests/conftest.py)
HOOKS_DIR = ROOT / "tests" / "fixtures" / "srs-hooks"


def require_browser(*, ffmpeg: bool = False) -> None:
    """Skip the calling test module, naming what is missing, without node or Chromium (or
    ffmpeg, where the page plays a stream)."""
    needs = [("node", NODE is not None), (f"Chromium at {CHROMIUM}", Path(CHROMIUM).exists())]
    if ffmpeg:
        needs.append(("ffmpeg", shutil.which("ffmpeg") is not None))
    missing = [what for what, found in needs if not found]
    if missing:
        pytest.skip(
            f"browser tests need {', '.join(missing)} "
            "(apt-get install -y chromium ffmpeg nodejs npm; then npm ci in tests/e2e)",
            allow_module_level=True,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"livehub exited with {proc.returncode} before answering HTTP")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"livehub did not answer {url} within {timeout} s")


def stop(proc: subprocess.Popen[bytes], log: IO[bytes], name: str) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.seek(0)
    sys.stderr.write(f"--- {name} log (tail)\n")
    sys.stderr.write(log.read().decode(errors="replace")[-4000:])


def install_playwright_core() -> None:
    """``npm ci`` in tests/e2e unless done already (CI and ``make e2e`` may also do it)."""
    if (HERE / "node_modules" / "playwright-core").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "playwright-core is not installed and npm is missing: run `npm ci` in tests/e2e"
        )
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"`npm ci` in tests/e2e failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


@contextlib.contextmanager
def livehub_process(what: str, port: int | None = None, **settings: str) -> Iterator[str]:
    """A whole livehub (an in-memory database) on 127.0.0.1, its base URL; stopped afterwards
    (its log shown if it failed). ``settings`` (``LIVEHUB_*``) go over the tests' defaults: the
    e2e hook secret, no reconciliation passes, an SRS API where nothing listens."""
    port = port or free_port()
    env = {
        **os.environ,
        "LIVEHUB_HOST": "127.0.0.1",
        "LIVEHUB_HOOK_SECRET": HOOK_SECRET,
        "LIVEHUB_RECONCILE_INTERVAL": "0",
        "LIVEHUB_SRS_API_URL": f"http://127.0.0.1:{free_port()}",
        **settings,
    }
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "livehub", "--port", str(port), "--db", ":memory:"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{base}/healthz", proc)
            yield base
        finally:
            stop(proc, log, f"livehub ({what})")
