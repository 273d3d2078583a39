"""``hammer prompt REQUEST.json``: print the exact prompt the server generates from."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hammer.server.commands.settings_args import add_settings_arguments, settings_from_args

HELP = "Print the exact prompt the server would generate from for a chat-completions request body."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request", metavar="REQUEST.json", help="request body as JSON ('-' reads stdin)")
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from hammer.server.convert import convert
    from hammer.server.errors import APIError, validation_error
    from hammer.server.protocol import ChatCompletionRequest
    from pydantic import ValidationError

    settings = settings_from_args(args)
    try:
        text = sys.stdin.read() if args.request == "-" else open(args.request, encoding="utf-8").read()
        request = ChatCompletionRequest.model_validate({"model": "-", **json.loads(text)})
        prompt = convert(request, settings, lambda messages: _model_chat_prompt(settings, messages)).prompt
    except OSError as exc:
        print(f"hammer prompt: cannot read {args.request}: {exc.strerror}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        source = "standard input" if args.request == "-" else args.request
        print(f"hammer prompt: {source} is not a JSON chat request ({exc.msg}, line {exc.lineno} column "
              f"{exc.colno})", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"hammer prompt: {validation_error(list(exc.errors())).message}", file=sys.stderr)
        return 2
    except APIError as exc:
        print(f"hammer prompt: {exc.message}", file=sys.stderr)
        return 2
    sys.stdout.write(prompt)
    return 0


def _model_chat_prompt(settings: Any, messages: list[dict[str, Any]]) -> str:
    """Requests without tools use the model's own template: read it from the model."""
    import asyncio

    from hammer.server.backends import load_backend

    backend = load_backend(settings)
    asyncio.run(backend.start())
    return backend.chat_prompt(messages)
