"""The ``hammer`` console script: subcommands registered by module, imported only when run."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

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
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
