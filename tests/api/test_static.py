"""The console's files under /static, over real HTTP: served as files (types, validators, HEAD),
nothing outside the directory reachable, and a file that is not there answered in the one JSON
error shape like every other error (it was an empty-bodied 404: found by an audit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from livehub.api import console
from tests.conftest import Client

NOT_FOUND = {"error": "Not Found", "code": "not_found", "details": None}


async def test_a_console_file_is_served(client: Client) -> None:
    resp = await client.get("/static/app.js")
    assert resp.status == 200
    assert resp.content_type == "application/javascript"
    assert await resp.read() == (console.STATIC / "app.js").read_bytes()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    # the file's validators work as before
    again = await client.get("/static/app.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    head = await client.head("/static/index.html")
    assert head.status == 200 and head.content_type == "text/html"


@pytest.mark.parametrize(
    "path",
    [
        "/static/nope.js",
        "/static/sub/nope.js",
        "/static/",
        "/static/..%2fapp.py",
        "/static/..%2f..%2fpyproject.toml",
        "/static/%2fetc%2fpasswd",
        "/static/%2e%2e/api/console.py",
        "/static/app.js%00.png",
    ],
)
async def test_what_is_not_a_console_file_is_a_json_404(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert await resp.json() == NOT_FOUND


async def test_no_symlink_leads_out_of_the_directory(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "page.js").write_text("export {};\n")
    (tmp_path / "secret.txt").write_text("not for the web\n")
    (static / "inside.js").symlink_to(static / "page.js")
    (static / "outside.txt").symlink_to(tmp_path / "secret.txt")
    monkeypatch.setattr(console, "STATIC", static)
    inside = await client.get("/static/inside.js")
    assert inside.status == 200 and await inside.text() == "export {};\n"
    outside = await client.get("/static/outside.txt")
    assert outside.status == 404 and await outside.json() == NOT_FOUND
