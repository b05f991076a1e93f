"""The docs document every setting the code reads, point at nothing outside the repository, and
show commands that a fresh clone can run (the make targets exist and do what the docs say)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from livehub.config import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def read_by_code() -> set[str]:
    """Every ``LIVEHUB_*`` name in livehub's source (Python and the console), less the prefixes
    prose uses for a family (``LIVEHUB_WEBHOOK_*``)."""
    names: set[str] = set()
    for path in (ROOT / "livehub").rglob("*"):
        if path.suffix in (".py", ".js", ".html"):
            names.update(re.findall(r"LIVEHUB_[A-Z0-9_]+", path.read_text()))
    return {name for name in names if not name.endswith("_")}


def test_readme_lists_every_setting_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(LIVEHUB_[A-Z_]+)`", readme))
    assert documented == set(ENV_VARS)


def test_operations_lists_every_setting_the_code_reads() -> None:
    """Issue 20 item 5: docs/operations.md says it lists every setting: each one the code
    names is a row of its configuration table."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    rows = set(re.findall(r"^\| `(LIVEHUB_[A-Z0-9_]+)`", operations, re.M))
    rows |= set(re.findall(r"^\| `LIVEHUB_[A-Z0-9_]+`, `(LIVEHUB_[A-Z0-9_]+)`", operations, re.M))
    code = read_by_code()
    assert set(ENV_VARS) <= code  # the scan sees what config.py reads
    assert sorted(code - rows) == []


def test_readme_shows_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_docs_point_at_nothing_outside_the_repository() -> None:
    """Issue 20 item 4: no ``../shared`` or ``shared/...`` file a clone does not have; relative
    links resolve to files of the repository."""
    for doc in DOCS:
        text = doc.read_text()
        assert not re.search(r"(\.\./)+shared|`shared/", text), doc.name
        for target in re.findall(r"\]\((?!https?://|#|mailto:)([^)#\s]+)", text):
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}"


def make_n(*args: str) -> str:
    done = subprocess.run(
        ["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_targets_the_docs_show_run_the_cli() -> None:
    """Issue 20 item 6: the CLI commands the docs show can be pasted from a checkout, where
    ``livehub`` is not on PATH: ``make migrate-db ARGS=...`` and ``make cluster WORKERS=4``
    run the venv's livehub with those arguments."""
    migrate = make_n("migrate-db", "ARGS=--from livehub.db --to postgresql://u@h/db")
    assert ".venv/bin/livehub migrate-db --from livehub.db --to postgresql://u@h/db" in migrate
    cluster = make_n("cluster", "WORKERS=4")
    assert ".venv/bin/livehub --workers 4" in cluster
    docs = "\n".join(doc.read_text() for doc in DOCS)
    # the docs use the make targets, not a bare `livehub` that is not on PATH after `make run`
    assert "make migrate-db ARGS=" in docs and "make cluster WORKERS=" in docs
    bare = re.findall(r"^\s*livehub (?:migrate-db|--workers)\b.*$", docs, re.M)
    assert bare == []
