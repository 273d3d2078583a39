"""Command-line flags generated from ``Settings``, so flags and env vars cannot drift apart."""

from __future__ import annotations

import argparse
from typing import Any

from hammer.server.settings import Settings
from pydantic import ValidationError


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS,
                            metavar=name.upper(),
                            help=f"{field.description} (env HAMMER_{name.upper()}; default: {default!r})")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags override environment variables, which override defaults."""
    given: dict[str, Any] = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = [f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors()]
        raise SystemExit("hammer: invalid settings:\n  " + "\n  ".join(lines)) from None
