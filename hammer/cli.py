"""The ``hammer`` console script: subcommands registered by module, imported only when run."""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from typing import NoReturn, Sequence

# name → module with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS: dict[str, str] = {
    "serve": "hammer.server.commands.serve",
    "prompt": "hammer.server.commands.prompt",
    "data": "hammer.training.commands.data",
    "train": "hammer.training.commands.train",
    "export": "hammer.training.commands.export",
    "eval": "hammer.evaluation.commands.eval",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hammer", description="Serve and train Hammer function-calling models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unrecognized(parser, args.command, unknown)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


def _unrecognized(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> NoReturn:
    """argparse names an unknown flag under the top-level usage; say it under the command's usage,
    with the flag it probably meant (``--prot`` → ``--port``)."""
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    sub = commands.choices[command]
    known = [flag for action in sub._actions for flag in action.option_strings]
    flag = next((arg for arg in unknown if arg.startswith("-")), unknown[0])
    close = difflib.get_close_matches(flag.split("=")[0], known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else f" (see: hammer {command} --help)"
    sub.error(f"unrecognized argument{'s' if len(unknown) > 1 else ''}: {' '.join(unknown)}{hint}")


if __name__ == "__main__":
    sys.exit(main())
