"""Command-line flags generated from ``Settings``, so flags and env vars cannot drift apart."""

from __future__ import annotations

import argparse
from typing import Any

from hammer.server.errors import in_our_words
from hammer.server.settings import Settings
from pydantic import ValidationError


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; a boolean is a switch pair (``--enforce-eager`` / ``--no-enforce-eager``),
    as vLLM and llama.cpp write theirs."""
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        flag = f"--{name.replace('_', '-')}"
        help = f"{field.description} (env HAMMER_{name.upper()}; default: {default!r})"
        if field.annotation in (bool, bool | None):  # None: unset, the backend picks for the platform
            parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, action=argparse.BooleanOptionalAction,
                                help=help)
        else:
            parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=name.upper(), help=help)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags override environment variables, which override defaults."""
    given: dict[str, Any] = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = [f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {in_our_words(e)}" for e in exc.errors()]
        raise SystemExit("hammer: invalid settings:\n  " + "\n  ".join(lines)) from None
