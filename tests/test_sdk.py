"""The JavaScript SDK (sdk/): its Node tests against a real livehub process they start (the SDK
loaded from that livehub's /sdk/livehub-client.js; docs/frontend.md's example run as it is),
and its TypeScript declarations checked by the TypeScript compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "sdk"
NODE = shutil.which("node")


def _node_major() -> int:
    if NODE is None:
        return 0
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True)
    return int(version.stdout.strip().lstrip("v").split(".")[0])


pytestmark = pytest.mark.skipif(
    _node_major() < 20, reason="the SDK's tests need Node 20 or later (apt-get install nodejs)"
)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIVEHUB_PYTHON": sys.executable}
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_sdk_against_a_real_livehub_from_node() -> None:
    assert NODE is not None
    tests = sorted(str(path.relative_to(ROOT)) for path in (SDK / "test").glob("*.test.mjs"))
    assert "sdk/test/livehub-client.test.mjs" in tests and "sdk/test/frontend-doc.test.mjs" in tests
    # Node 20 has its WebSocket behind this flag (22 has it by default and ignores the flag)
    result = _run([NODE, "--experimental-websocket", "--test", *tests], timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout


def test_the_type_declarations_compile() -> None:
    tsc = SDK / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.skip("TypeScript is not installed: `cd sdk && npm ci` (make test does)")
    result = _run(["npm", "run", "-s", "--prefix", str(SDK), "types"], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
