"""The README documents every setting the code reads, and the commands that set up a machine."""

from __future__ import annotations

import re
from pathlib import Path

from livehub.config import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]


def test_readme_lists_every_setting_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(LIVEHUB_[A-Z_]+)`", readme))
    assert documented == set(ENV_VARS)


def test_readme_shows_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
