"""The web console is built on the JavaScript SDK: its page modules (livehub/static/*.js) import
/sdk/livehub-client.js and build no protocol message, open no socket and call no API
themselves (livehub issue 19). The browser tests (tests/e2e/) show that it works that way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[1] / "livehub" / "static"
MODULES = sorted(STATIC.glob("*.js"))
#: `type:` in a page module is an element's (buttons, inputs), never a message's
DOM_TYPES = {"button", "submit", "checkbox", "password"}


def test_there_are_page_modules() -> None:
    assert {"app.js", "lobby.js", "room.js", "stage.js", "chat.js"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_no_page_module_speaks_the_protocol_itself(module: Path) -> None:
    code = module.read_text()
    types = set(re.findall(r"""\btype:\s*['"]([^'"]*)['"]""", code))
    assert types <= DOM_TYPES, f"{module.name} builds messages of types {types - DOM_TYPES}"
    for call in ("new WebSocket(", "fetch(", "new RTCPeerConnection(", "JSON.stringify("):
        assert call not in code, f"{module.name} calls {call} itself: the SDK does"


def test_the_console_imports_the_sdk_livehub_serves() -> None:
    importers = [p.name for p in MODULES if "from '/sdk/livehub-client.js'" in p.read_text()]
    assert "api.js" in importers  # the Livehub instance every REST and signaling call uses
    assert {"player.js", "publisher.js", "stage.js"} <= set(importers)  # WHEP / WHIP
