"""Schemathesis against ``/api/openapi.json`` of a real livehub process (``make fuzz``).

livehub runs as ``python -m livehub`` on a free 127.0.0.1 port with ``--db :memory:``, the hook
secret and an admin token set, and a stub SRS HTTP API (so ``/readyz`` is ready and kicks get
an answer). Rooms in every state are seeded first; ``st run`` (examples, coverage, fuzzing and
stateful phases, bounded by ``MAX_EXAMPLES`` per operation) has its generator steered by
``st_hooks.py``, for about half of the cases, to those rooms' ids, their owner/admin tokens
and the right hook secret, so the owner view, closing and hook handling are reached, not only
the 403/404 answers.

Every response must: not be a server error; have a status code, Content-Type, headers and body
that the document describes; be refused when the request breaks the document and accepted when
it keeps it; and carry no secret it should not (the hook secret and admin token never; owner
and publish tokens only in a creation reply or an owner's GET). Then livehub's own log must hold
no secret, no 5xx and no error.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.fuzz

HOOK_SECRET = "fuzz-hook-secret-0123456789abcdef"
ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"
MAX_EXAMPLES = 100
STARTUP_TIMEOUT = 20.0
RUN_TIMEOUT = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _FakeSRSAPI(BaseHTTPRequestHandler):
    """Just enough of SRS's HTTP API: versions (readiness), streams (none), kick."""

    def _reply(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/versions"):
            self._reply({"code": 0, "server": "vid-fuzz", "service": "fuzz", "pid": "1"})
        elif self.path.startswith("/api/v1/streams/"):
            self._reply({"code": 0, "server": "vid-fuzz", "service": "fuzz", "streams": []})
        else:
            self._reply({"code": 1001})

    def do_DELETE(self) -> None:
        self._reply({"code": 0})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Livehub:
    base: str
    log_path: Path
    rooms: list[dict[str, Any]] = field(default_factory=list)

    def secrets(self) -> list[str]:
        tokens = [HOOK_SECRET, ADMIN_TOKEN]
        for room in self.rooms:
            tokens += [room["ownerToken"], room["publish"]["token"]]
        return tokens


@pytest.fixture(scope="module")
def livehub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Livehub]:
    srs = ThreadingHTTPServer(("127.0.0.1", 0), _FakeSRSAPI)
    threading.Thread(target=srs.serve_forever, daemon=True).start()
    port = free_port()
    log_path = tmp_path_factory.mktemp("livehub") / "livehub.log"
    env = {
        **os.environ,
        "LIVEHUB_HOOK_SECRET": HOOK_SECRET,
        "LIVEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEHUB_SRS_API_URL": f"http://127.0.0.1:{srs.server_address[1]}",
        "LIVEHUB_RECONCILE_INTERVAL": "0",
        "LIVEHUB_RECONNECT_WINDOW": "0",
        "LIVEHUB_LOG_LEVEL": "DEBUG",
    }
    command = [sys.executable, "-m", "livehub", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--db", ":memory:"],
            env=env,
            cwd=log_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "livehub did not start"
            time.sleep(0.1)
        yield Livehub(base, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        srs.shutdown()
        srs.server_close()


def seed(livehub: Livehub) -> None:
    """Rooms in every state: preparing, live (published through the hook), ended."""
    for title in ("preparing", "live", "ended"):
        resp = requests.post(f"{livehub.base}/api/rooms", json={"title": title}, timeout=5)
        assert resp.status_code == 201
        livehub.rooms.append(resp.json())
    live, ended = livehub.rooms[1], livehub.rooms[2]
    hook = {
        "action": "on_publish",
        "client_id": "fuzzpub1",
        "app": "live",
        "stream": live["streamKey"],
        "param": f"?secret={live['publish']['token']}",
    }
    resp = requests.post(
        f"{livehub.base}/api/hooks/srs", params={"secret": HOOK_SECRET}, json=hook, timeout=5
    )
    assert resp.json() == {"code": 0}
    resp = requests.post(
        f"{livehub.base}/api/rooms/{ended['id']}/close",
        headers={"Authorization": f"Bearer {ended['ownerToken']}"},
        timeout=5,
    )
    assert resp.status_code == 200


RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) (\S+): ", re.MULTILINE)
ACCESS_5XX = re.compile(r'" 5\d\d ')


def log_records(text: str) -> list[tuple[str, str, str]]:
    """(level, logger, whole record with its traceback) for each record of livehub's log."""
    starts = list(RECORD.finditer(text))
    ends = [match.start() for match in starts[1:]] + [len(text)]
    return [(m[1], m[2], text[m.start() : end]) for m, end in zip(starts, ends, strict=True)]


def assert_clean_log(livehub: Livehub) -> None:
    """livehub logged no secret (its access log drops query strings, where SRS puts the hook
    secret), answered no 5xx, and logged nothing at ERROR level but aiohttp's own notes on
    requests its HTTP parser refused with 400 (schemathesis probes whether a NUL byte in a
    header gets through)."""
    text = livehub.log_path.read_text(errors="replace")
    records = log_records(text)
    assert sum(logger == "aiohttp.access" for _, logger, _ in records) > 1000
    for secret in livehub.secrets():
        assert secret not in text
    assert [
        r for level, logger, r in records if logger == "aiohttp.access" and ACCESS_5XX.search(r)
    ] == []
    errors = [
        record
        for level, logger, record in records
        if level in ("ERROR", "CRITICAL")
        and not (
            logger == "aiohttp.server" and "aiohttp.http_exceptions.BadHttpMessage: 400" in record
        )
    ]
    assert errors == []


ST = [sys.executable, "-m", "schemathesis.cli"]  # the `st` command of this environment
HOOKS = Path(__file__).with_name("st_hooks.py")
CONFIG = Path(__file__).with_name("schemathesis.toml")
#: every built-in check but ``ignored_auth``: the hooks swap generated tokens for real ones,
#: which that check reads as "invalid credentials accepted"
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "no_secret_leak",  # tests/fuzz/st_hooks.py
]


def test_api_conforms_to_its_openapi_document(livehub: Livehub, tmp_path: Path) -> None:
    seed(livehub)
    rooms = [
        {"id": r["id"], "ownerToken": r["ownerToken"], "publishToken": r["publish"]["token"]}
        for r in livehub.rooms
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "LIVEHUB_FUZZ_ROOMS": json.dumps(rooms),
        "LIVEHUB_FUZZ_HOOK_SECRET": HOOK_SECRET,
        "LIVEHUB_FUZZ_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    report_path = tmp_path / "report.json"
    command = [
        *ST,
        f"--config-file={CONFIG}",
        "run",
        f"{livehub.base}/api/openapi.json",
        f"--checks={','.join(CHECKS)}",
        f"--max-examples={MAX_EXAMPLES}",
        "--workers=1",
        "--phases=examples,coverage,fuzzing,stateful",
        "--generation-database=none",
        "--request-timeout=10",
        "--no-color",
        "--report=json",
        f"--report-json-path={report_path}",
    ]
    run = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-5000:]
    report = json.loads(report_path.read_text())
    assert report["complete"] and report["failures"] == [] and report["errors"] == []
    operations = report["operations"]
    assert operations["tested"] == operations["selected"] >= 9
    for phase in ("coverage", "fuzzing", "stateful"):
        assert report["phases"][phase]["status"] == "success", phase
    # the hooks' steering reached past the 403s and 404s
    for label in (
        "GET /api/rooms/{roomId}",
        "POST /api/rooms/{roomId}/close",
        "POST /api/hooks/srs",
    ):
        assert report["valid_rates"][label]["fuzzing"]["accepted"] > 0, label
    assert_clean_log(livehub)
