"""Readers for the files under deploy/: Dockerfiles, the compose file and .env.example.

The tests read the deployment's own files (entrypoint, environment, healthcheck) instead of
copying them, so a change to the deployment is tested as it is.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILES = {"cpu": DEPLOY / "docker" / "Dockerfile.cpu", "gpu": DEPLOY / "docker" / "Dockerfile.gpu"}
SERVICES = {"cpu": "hammer-cpu", "gpu": "hammer-gpu"}
TERMUX_SCRIPT = DEPLOY / "termux" / "hammer-termux.sh"


def require_tool(name: str, install: str) -> str:
    """Path of an external checker; skipped when missing, except in CI where it must be installed."""
    # The running interpreter's bin dir first: the [test] extra installs the checkers there, and a
    # virtualenv that is used but not activated (``.venv/bin/python -m pytest``) is not on PATH.
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (install it with: {install})")
        pytest.skip(f"{name} is not installed (install it with: {install})")
    return path


# ----- Dockerfiles ------------------------------------------------------------------------------

@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV KEY=VALUE pairs of this stage (later ones win)."""
        result: dict[str, str] = {}
        for args in self.all("ENV"):
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"use the ENV KEY=VALUE form: {args!r}"
                result[key] = value
        return result

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of ENTRYPOINT or CMD; [] when absent."""
        args = self.last(keyword)
        if args is None:
            return []
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{keyword} must be exec form"
        return value


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str | None]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def resolve_base(self, stage: Stage) -> str:
        """The stage's base image with global ARG defaults substituted."""
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1)) or m.group(0), stage.base)

    def entrypoint_command(self) -> list[str]:
        """What the final image runs: ENTRYPOINT followed by CMD."""
        return self.final.exec_form("ENTRYPOINT") + self.final.exec_form("CMD")


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue  # comments (and parser directives) and blank lines between instructions
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM: {line!r}"
            key, sep, value = args.partition("=")
            global_args[key] = value.strip('"') if sep else None
        else:
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(path, global_args, stages)


# ----- compose ------------------------------------------------------------------------------

class InterpolationError(ValueError):
    pass


_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-file interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}."""

    def replace(match: re.Match[str]) -> str:
        escaped, name, op, arg, bare = match.groups()
        if escaped:
            return "$"
        if bare:
            return env.get(bare, "")
        value = env.get(name)
        if op is None:
            return value or ""
        arg = interpolate(arg or "", env)
        empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if empty else value  # type: ignore[return-value]
        if op.endswith("?"):
            if empty:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return value  # type: ignore[return-value]
        return "" if empty else arg  # "+": alternative value

    return _VAR.sub(replace, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose_raw() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the << merge keys


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    return interpolate_tree(load_compose_raw(), env)


def compose_variables() -> set[str]:
    """Names of the variables the compose file interpolates (comments excluded)."""
    text = "\n".join(line.split(" #")[0] for line in COMPOSE_FILE.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    return {m.group(2) or m.group(5) for m in _VAR.finditer(text) if not m.group(1)}


def env_example() -> dict[str, str]:
    """Variables .env.example documents, set (VAR=value) or commented out (#VAR=value)."""
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def env_example_active() -> dict[str, str]:
    """What docker compose reads from a copy of .env.example: the uncommented assignments."""
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def service_environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The container environment compose sets: pass-through entries (no value) only when set."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    result: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            if key in env:
                result[key] = env[key]
        else:
            result[key] = str(value)
    return result
