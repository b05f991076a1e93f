"""The shipped deployment files read as data: compose files (with compose's variable
interpolation), srs.conf (a parser for SRS's nginx-like syntax), the Dockerfile and
.dockerignore; used by the deploy tests and the real-SRS tests."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from livehub.app import create_app
from livehub.config import Config

REPO = Path(__file__).resolve().parents[1]


HOOKS_DIR = REPO / "tests" / "fixtures" / "srs-hooks"


HOOKS = ("on_publish", "on_unpublish", "on_play", "on_stop", "on_dvr")


#: the shell (or .env) of a deployment: compose requires every secret (``${VAR:?...}``), so the
#: files are read with these, as an operator who followed .env.example would run them
SHELL = {
    "LIVEHUB_HOOK_SECRET": "Deploy-check_hook-secret.0123",
    "SRS_API_USERNAME": "livehub-api",
    "SRS_API_PASSWORD": "Deploy-check_srs-api-password",
    "POSTGRES_PASSWORD": "Deploy-check_postgres-password",
    "REDIS_PASSWORD": "Deploy-check_redis-password",
    "LIVEHUB_VIEWER_TOKEN_SECRET": "Deploy-check_viewer-token-secret.0123456789",
}


class SrsConfError(ValueError):
    """srs.conf is not well formed; the message names the line."""


@dataclasses.dataclass(frozen=True)
class Directive:
    """``name args...;`` (``block`` is None) or ``name args... { ... }``."""

    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None
    line: int = 0

    def all(self, name: str) -> list[Directive]:
        return [child for child in self.block or () if child.name == name]

    def get(self, name: str) -> Directive | None:
        found = self.all(name)
        assert len(found) <= 1, f"{self.name}: {name} appears {len(found)} times"
        return found[0] if found else None

    def one(self, name: str) -> Directive:
        found = self.get(name)
        assert found is not None, f"{self.name}: no {name}"
        return found

    def value(self, name: str) -> str:
        """The single argument of the child directive ``name``."""
        child = self.one(name)
        assert child.block is None and len(child.args) == 1, f"{name}: {child.args}"
        return child.args[0]


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # "word", ";", "{", "}"
    text: str
    line: int


def _tokenize(text: str) -> Iterator[_Token]:
    """SRS's reader: ``#`` starts a comment at the start of a token, quotes group a word, a word
    ends at whitespace, ``;`` or ``{``."""
    i, line, n = 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch in ";{}":
            yield _Token(ch, ch, line)
            i += 1
        elif ch in "\"'":
            end = text.find(ch, i + 1)
            if end < 0:
                raise SrsConfError(f"line {line}: unterminated quote")
            yield _Token("word", text[i + 1 : end], line)
            line += text.count("\n", i, end)
            i = end + 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in ";{":
                i += 1
            yield _Token("word", text[start:i], line)


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = list(_tokenize(text))
        self._pos = 0

    def parse(self) -> Directive:
        return Directive("root", (), self._directives(nested=False))

    def _directives(self, *, nested: bool) -> tuple[Directive, ...]:
        found: list[Directive] = []
        while self._pos < len(self._tokens):
            token = self._tokens[self._pos]
            self._pos += 1
            if token.kind == "}":
                if not nested:
                    raise SrsConfError(f"line {token.line}: unexpected '}}'")
                return tuple(found)
            if token.kind != "word":
                raise SrsConfError(f"line {token.line}: unexpected {token.kind!r}")
            found.append(self._directive(token))
        if nested:
            raise SrsConfError("unexpected end of file, expecting '}'")
        return tuple(found)

    def _directive(self, name: _Token) -> Directive:
        args: list[str] = []
        while self._pos < len(self._tokens):
            token = self._tokens[self._pos]
            self._pos += 1
            if token.kind == "word":
                args.append(token.text)
            elif token.kind == ";":
                return Directive(name.text, tuple(args), None, name.line)
            elif token.kind == "{":
                return Directive(name.text, tuple(args), self._directives(nested=True), name.line)
            else:
                raise SrsConfError(f"line {token.line}: unexpected '}}' in {name.text}")
        raise SrsConfError(f"line {name.line}: {name.text}: expecting ';' or '{{'")


def parse_srs_conf(text: str) -> Directive:
    return _Parser(text).parse()


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}``,
    ``${VAR:+alt}`` and ``$$`` (no nesting), resolved against ``env``."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        braced = _BRACED.fullmatch(match["braced"])
        if braced is None:
            raise ValueError(f"invalid interpolation: {match[0]!r}")
        current = env.get(braced["name"])
        op, arg = braced["op"], braced["arg"] or ""
        is_set = current is not None and (current != "" or not (op or "").startswith(":"))
        if op is None:
            return current or ""
        if op.endswith("-"):
            return current if is_set and current is not None else arg
        if op.endswith("+"):
            return arg if is_set else ""
        if not is_set:  # ? and :?
            raise ValueError(f"{braced['name']} is required: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


@functools.cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    svc: dict[str, Any] = services[name]
    return svc


def service_env(name: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A service's environment with compose's interpolation applied; by default against
    :data:`SHELL` (the required secrets, nothing else: every ``${VAR:-default}`` resolves to
    its default)."""
    raw = service(name).get("environment", {})
    items: list[tuple[str, Any]]
    if isinstance(raw, list):
        items = [tuple(entry.split("=", 1)) if "=" in entry else (entry, None) for entry in raw]
    else:
        items = list(raw.items())
    resolved: dict[str, str] = {}
    for key, value in items:
        if value is None:  # passed through from the shell: unset here
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        resolved[key] = interpolate(text, SHELL if env is None else env)
    return resolved


@functools.cache
def srs_conf() -> Directive:
    return parse_srs_conf((REPO / "srs.conf").read_text())


def vhost() -> Directive:
    found = [d for d in srs_conf().all("vhost") if d.args == ("__defaultVhost__",)]
    assert len(found) == 1, "srs.conf needs exactly one vhost __defaultVhost__"
    return found[0]


def hook_urls() -> dict[str, str]:
    hooks = vhost().one("http_hooks")
    return {name: hooks.value(name) for name in HOOKS if hooks.get(name) is not None}


def livehub_config(env: Mapping[str, str] | None = None) -> Config:
    """The Config livehub builds in its container from compose's environment."""
    return Config.from_env(service_env("livehub", env))


def app_path(route: str, **parts: str) -> str:
    app = create_app(livehub_config())
    return str(app.router[route].url_for(**parts))
