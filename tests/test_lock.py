"""The lock files in ``requirements/`` against ``setup.cfg``: what every install uses is exactly
pinned, hashed, complete, and inside the ranges livehub declares for people who install it as a
library. ``make lock`` writes them; these tests say when a hand edit (or a range changed without
``make lock``) left them out of step."""

from __future__ import annotations

import configparser
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements"

# ``name==version`` with an optional ``; marker``, then `` \`` and its ``--hash`` lines
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]+))?\\?\s*$"
)


def lock(name: str) -> dict[NormalizedName, Version]:
    """The pins of ``requirements/<name>`` that apply to this interpreter and platform."""
    pins: dict[NormalizedName, Version] = {}
    entry: str | None = None
    hashes = 0
    for line in (LOCKS / name).read_text().splitlines():
        if line.startswith((" ", "\t")):
            hashes += "--hash=sha256:" in line
            continue
        if entry is not None:
            assert hashes, f"{name}: {entry} has no hash"
        entry, hashes = None, 0
        if not line or line.startswith("#"):
            continue
        found = PIN.match(line)
        assert found, f"{name}: not an exact pin: {line!r}"
        entry = found["name"]
        marker = found["marker"]
        if marker is None or Marker(marker.strip()).evaluate():
            key = canonicalize_name(found["name"])
            assert key not in pins, f"{name}: {key} pinned twice for this platform"
            pins[key] = Version(found["version"])
    if entry is not None:
        assert hashes, f"{name}: {entry} has no hash"
    return pins


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser


def requirements(raw: str) -> list[Requirement]:
    """The requirements of one setup.cfg list (comments and blank lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in raw.splitlines())
    return [Requirement(line) for line in lines if line]


def runtime_requirements() -> list[Requirement]:
    return requirements(setup_cfg()["options"]["install_requires"])


def extra_requirements() -> list[Requirement]:
    """Every requirement of the extras ``dev`` pulls in (``livehub[...]`` expanded)."""
    extras = setup_cfg()["options.extras_require"]
    found: list[Requirement] = []
    pending = ["dev"]
    while pending:
        for requirement in requirements(extras[pending.pop()]):
            if canonicalize_name(requirement.name) == "livehub":
                pending += sorted(requirement.extras)
            else:
                found.append(requirement)
    return found


def applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


def assert_satisfied(
    pins: dict[NormalizedName, Version], wanted: list[Requirement], lock_name: str
) -> None:
    for requirement in filter(applies, wanted):
        key = canonicalize_name(requirement.name)
        assert key in pins, f"{requirement} (setup.cfg) is missing from requirements/{lock_name}"
        assert requirement.specifier.contains(pins[key], prereleases=True), (
            f"requirements/{lock_name} pins {key}=={pins[key]}, outside setup.cfg's {requirement}: "
            "run `make lock`"
        )


def test_runtime_lock_pins_every_runtime_dependency_within_setup_cfg() -> None:
    assert_satisfied(lock("runtime.txt"), runtime_requirements(), "runtime.txt")


def test_dev_lock_pins_runtime_test_lint_and_lock_tools_within_setup_cfg() -> None:
    assert_satisfied(lock("dev.txt"), runtime_requirements() + extra_requirements(), "dev.txt")


def test_runtime_and_dev_locks_agree_on_every_shared_package() -> None:
    runtime, dev = lock("runtime.txt"), lock("dev.txt")
    differ = {
        name: (runtime[name], dev.get(name)) for name in runtime if dev.get(name) != runtime[name]
    }
    assert not differ, f"make run and make test would install different versions: {differ}"


def test_build_lock_holds_the_build_backend_pyproject_names() -> None:
    build = lock("build.txt")
    wanted = [
        Requirement(r)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    ]
    assert_satisfied(build, [*wanted, Requirement("pip")], "build.txt")


@pytest.mark.parametrize("lock_name", ["runtime.txt", "dev.txt"])
def test_each_lock_is_closed_under_the_dependencies_of_what_it_pins(lock_name: str) -> None:
    """Installs use ``--no-deps``: a dependency the lock forgot would be missing at import time.
    What each pinned distribution requires (read from this environment, installed from dev.txt)
    must be pinned too."""
    pins = lock(lock_name)
    missing: dict[str, list[str]] = {}
    for name in pins:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            if lock_name == "dev.txt":
                raise AssertionError(
                    f"{name} is in dev.txt but not installed: run `make test`"
                ) from None
            continue  # runtime-only platform pins are checked by dev.txt's run
        for raw in requires:
            requirement = Requirement(raw)
            if applies(requirement) and canonicalize_name(requirement.name) not in pins:
                missing.setdefault(name, []).append(str(requirement))
    assert not missing, f"requirements/{lock_name} lacks dependencies of what it pins: {missing}"


def test_this_environment_is_the_dev_lock() -> None:
    """`make test` ran in a virtualenv installed from dev.txt: every pin is what is installed."""
    differ = {}
    for name, version in lock("dev.txt").items():
        installed = Version(metadata.version(name))
        if installed != version:
            differ[name] = (str(version), str(installed))
    assert not differ, (
        f"installed versions differ from requirements/dev.txt (locked, installed): {differ}"
    )


def test_every_install_goes_through_the_locks_with_hashes() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "--require-hashes" in makefile
    for lock_name in ("build.txt", "runtime.txt", "dev.txt"):
        assert f"-r requirements/{lock_name}" in makefile, lock_name
    # the only unlocked install is the informative lint-latest target's own virtualenv
    unlocked = [
        line
        for line in makefile.splitlines()
        if "pip install" in line and "--require-hashes" not in line and ".venv-latest" not in line
    ]
    assert all("--no-deps" in line for line in unlocked), unlocked
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements/runtime.txt" in dockerfile
    assert "--require-hashes --no-deps -r requirements/build.txt" in dockerfile
    assert re.search(r"pip install --no-deps --no-build-isolation \.", dockerfile)
