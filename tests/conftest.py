"""Fixtures chain config → app → client; the app is built exactly as ``__main__`` builds it."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.config import Config
from livehub.tasks import IGNORED
from tests.engines import Engine, EngineUnavailable, PostgresEngine, RedisEngine

if TYPE_CHECKING:
    from tests.fake_srs import FakeSRS
    from tests.processes import Server

ROOT = Path(__file__).resolve().parents[1]
# SRS's hook and API bodies, kept in the repository (tests/fixtures/srs-hooks/README.md says
# where each comes from), so a clone needs nothing beside it to run the suite
HOOKS_DIR = ROOT / "tests" / "fixtures" / "srs-hooks"
# what only the project's workspace has beside the checkout (SRS executables, the seed's Node
# server, the load generator): tests that need it skip with a reason where it is missing
SHARED = Path(os.environ.get("LIVEHUB_SHARED", ROOT.parent / "shared"))
HOOK_SECRET = "test-hook-secret-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"

Client = TestClient[web.Request, web.Application]


def hook_fixture(name: str) -> dict[str, Any]:
    """A hook body from tests/fixtures/srs-hooks (as SRS sends it)."""
    data: dict[str, Any] = json.loads((HOOKS_DIR / name).read_text())
    return data


def captured_hooks(name: str) -> list[dict[str, Any]]:
    lines = (HOOKS_DIR / "captured" / name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def make_config(**overrides: Any) -> Config:
    base: dict[str, Any] = {
        "db_path": ":memory:",
        "hook_secret": HOOK_SECRET,
        "hook_secret_set": True,
        "admin_token": ADMIN_TOKEN,
        "srs_api_url": "http://127.0.0.1:9",
        "reconcile_interval": 0.0,
        "reconnect_window": 0.0,
        "viewer_count_interval": 0.02,
    }
    base.update(overrides)
    return Config(**base)


class _IgnoredCancellations(logging.Handler):
    """Collects livehub.tasks' warnings about a task that ignored its cancellation."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(IGNORED):
            self.seen.append(message)


@pytest.fixture(autouse=True)
def no_ignored_cancellation(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if a task ignored its cancellation (livehub.tasks logs its stack): that
    is a bug to fix, not a slow stop (tests that provoke it on purpose are marked)."""
    handler = _IgnoredCancellations()
    logger = logging.getLogger("livehub.tasks")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.seen and request.node.get_closest_marker("allow_ignored_cancellation") is None:
        pytest.fail("a task ignored its cancellation:\n" + "\n".join(handler.seen))


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def app(config: Config) -> web.Application:
    return create_app(config)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    return await aiohttp_client(app)


@pytest.fixture
def recordings_dir(tmp_path: Path) -> Path:
    """An empty ``LIVEHUB_RECORDINGS_DIR`` with SRS's ``live`` app folder."""
    path = tmp_path / "recordings"
    (path / "live").mkdir(parents=True)
    return path


CreateRoom = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def create_room(client: Client) -> CreateRoom:
    async def create(title: str = "Test room") -> dict[str, Any]:
        resp = await client.post("/api/rooms", json={"title": title})
        assert resp.status == 201, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    return create


async def send_hook(
    client: Client | aiohttp.ClientSession, body: dict[str, Any], *, base_url: str = ""
) -> dict[str, Any]:
    """Post a hook body as SRS does (compact JSON, the right secret); its JSON reply. A test
    client, or a session with the ``base_url`` of a livehub process."""
    resp = await client.post(
        f"{base_url}/api/hooks/srs?secret={HOOK_SECRET}",
        data=json.dumps(body, separators=(",", ":")),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 200
    reply: dict[str, Any] = await resp.json()
    return reply


async def post_as_srs(
    client: Client | aiohttp.ClientSession, target: str, body: bytes
) -> tuple[int, Any]:
    """POST ``body`` to ``target`` with SRS's headers; the status and the (JSON) reply. A test
    client, or a session with a ``base_url``."""
    resp = await client.post(
        target,
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "SRS/5.0.216(Bee)"},
    )
    text = await resp.text()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


PostHook = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
def post_hook(client: Client) -> PostHook:
    async def post(body: dict[str, Any], secret: str = HOOK_SECRET) -> tuple[int, Any]:
        # compact JSON, as SRS sends it
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        return await post_as_srs(client, f"/api/hooks/srs?secret={secret}", raw.encode())

    return post


def hook_for(room: dict[str, Any], name: str, **overrides: Any) -> dict[str, Any]:
    """A fixture body pointed at ``room``: its stream key and (for publishes) its token."""
    body = hook_fixture(name)
    if "stream" in body:  # on_close carries no stream
        suffix = ".m3u8" if body["stream"].endswith(".m3u8") else ""
        body["stream"] = room["streamKey"] + suffix
        body["stream_url"] = f"/live/{room['streamKey']}"
    token = room["publish"]["token"] if "publish" in room else "nope"
    param = body.get("param", "")
    body["param"] = param.replace("secret=abc", f"secret={token}").replace(
        "stream=room42", f"stream={room['streamKey']}"
    )
    body.update(overrides)
    return body


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """The livehub processes a test starts (:class:`tests.processes.Server`): each is killed at
    the end, whatever happened."""
    started: list[Server] = []
    yield started
    for server in started:
        await server.kill()


@pytest.fixture
async def srs() -> AsyncIterator[FakeSRS]:
    """The fake SRS HTTP API, listening on a free loopback port."""
    from tests.fake_srs import FakeSRS  # it imports this module's HOOKS_DIR

    fake = FakeSRS()
    await fake.start()
    yield fake
    await fake.stop()


# -- throwaway PostgreSQL and Redis (tests/engines.py) ------------------------------------------
# One of each per test session, shared by the store behaviour suite (tests/test_store_behaviour.py)
# and the cluster tests (tests/cluster/). Each test gets its own PostgreSQL database (``pg_url``)
# and its own Redis key prefix (``redis_prefix``). Fault tests stop, kill and restart the
# session's servers; the fixtures bring them back up afterwards. Without the Debian packages the
# tests skip with the reason (as the browser tests do without Chromium); ``.ci/run`` installs them.


E = TypeVar("E", bound=Engine)


def _engine(kind: type[E]) -> Iterator[E]:
    """A started engine of ``kind``, closed afterwards; the test skips without its packages."""
    try:
        engine = kind()
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    engine.start()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[PostgresEngine]:
    yield from _engine(PostgresEngine)


@pytest.fixture(scope="session")
def redis_engine() -> Iterator[RedisEngine]:
    yield from _engine(RedisEngine)


@pytest.fixture
def postgres(postgres_engine: PostgresEngine) -> Iterator[PostgresEngine]:
    """The session's PostgreSQL, running again after the test whatever the test did to it."""
    postgres_engine.ensure_running()
    yield postgres_engine
    postgres_engine.ensure_running()


@pytest.fixture
def redis_server(redis_engine: RedisEngine) -> Iterator[RedisEngine]:
    """The session's Redis, running again after the test whatever the test did to it."""
    redis_engine.ensure_running()
    yield redis_engine
    redis_engine.ensure_running()


@pytest.fixture
def redis_alone() -> Iterator[RedisEngine]:
    """A Redis of this test alone (whole-process nodes use livehub's default key prefix):
    leader locks and player counts start empty, and the test may kill it."""
    yield from _engine(RedisEngine)


@pytest.fixture
async def pg_url(postgres: PostgresEngine) -> AsyncIterator[str]:
    """A fresh, empty database of the session's PostgreSQL; dropped after the test."""
    url = await postgres.create_database()
    yield url
    await postgres.drop_database(url)


@pytest.fixture
def redis_prefix() -> str:
    """A key and channel prefix of this test alone."""
    return f"t{secrets.token_hex(4)}:"
