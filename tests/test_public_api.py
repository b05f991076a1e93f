"""livehub uses aiohttp's public API only: a minor release may move anything else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "livehub"


def private_uses(source: str) -> list[str]:
    """Imports of ``aiohttp._*`` modules, and hooks into aiohttp's protocol objects."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if re.match(r"aiohttp(\.\w+)*\._", a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if re.match(r"aiohttp(\.\w+)*\._", node.module):
                found.append(node.module)
            elif node.module.startswith("aiohttp"):
                found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and (
            node.attr == "set_parser" or (node.attr == "protocol" and _is_request(node.value))
        ):
            found.append(ast.unparse(node))
    return found


def _is_request(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("request", "req")


def test_the_checker_finds_what_it_is_for() -> None:
    source = """
import aiohttp._websocket.helpers
from aiohttp._websocket.helpers import websocket_mask
from aiohttp.http_websocket import _INTERNAL_RECEIVE_TYPES
request.protocol.set_parser(parser)
"""
    assert private_uses(source) == [
        "aiohttp._websocket.helpers",
        "aiohttp._websocket.helpers",
        "aiohttp.http_websocket._INTERNAL_RECEIVE_TYPES",
        "request.protocol.set_parser",
        "request.protocol",
    ]
    assert private_uses("from aiohttp import web, WSMsgType\nws.protocol = 1\n") == []


def test_livehub_uses_no_private_aiohttp_api() -> None:
    found = {
        str(path.relative_to(PACKAGE.parent)): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if (uses := private_uses(path.read_text()))
    }
    assert found == {}
