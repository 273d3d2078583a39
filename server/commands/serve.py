"""``hammer serve``: start the OpenAI-compatible server."""

from __future__ import annotations

import argparse
import logging

from server.commands.settings_args import add_settings_arguments, settings_from_args

HELP = "Start the OpenAI-compatible function-calling server (default: the embedded SmolLM2 model)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    settings = settings_from_args(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Our middleware writes structured access logs with request ids; uvicorn's would duplicate them.
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                access_log=False, timeout_graceful_shutdown=settings.shutdown_timeout)
    return 1 if app.state.failure else 0  # a dead backend: non-zero, so on-failure restart policies act
