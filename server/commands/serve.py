"""``hammer serve``: start the OpenAI-compatible server.

A server that cannot start says why in one line on stderr (``hammer serve: <what> (<what to do>)``),
never a traceback: exit 2 when the settings cannot work (a bad flag value, a missing or non-GGUF model
file, an unreadable --api-key-file, a backend whose package is not installed), exit 1 when starting
fails at run time (the port is taken, the model does not load). What can be checked before uvicorn
starts is; a failure in the app's startup (the model load) is caught from the lifespan protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys
from typing import Any

from hammer.server.commands.settings_args import add_settings_arguments, settings_from_args

HELP = "Start the OpenAI-compatible function-calling server (default: the embedded SmolLM2 model)."

BAD_SETTINGS = 2
RUNTIME_FAILURE = 1


class StartupFailed(Exception):
    """The server cannot start: one line for the user, and the exit status."""

    def __init__(self, message: str, status: int = BAD_SETTINGS) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause wrote
        self.status = status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        return _serve(args)
    except StartupFailed as exc:
        print(f"hammer serve: {exc}", file=sys.stderr)
        return exc.status


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from hammer.server.app import create_app

    settings = _settings(args)
    backend = _preflight(settings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, backend)
    guarded = _StartupGuard(app)
    # Our middleware writes structured access logs with request ids; uvicorn's would duplicate them.
    config = uvicorn.Config(guarded, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=False, timeout_graceful_shutdown=settings.shutdown_timeout)
    logging.getLogger("uvicorn.error").addFilter(_drop_startup_failed)  # we say why instead
    logging.getLogger("uvicorn.error").addFilter(_forced_quit_in_one_line)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 3 when the lifespan startup failed, 1 when it cannot bind
        if guarded.error is not None:
            raise StartupFailed(_describe(guarded.error), RUNTIME_FAILURE) from None
        if exc.code not in (0, None):
            raise StartupFailed(f"could not start on {settings.host}:{settings.port} (see the log above)",
                                RUNTIME_FAILURE) from None
        raise
    if guarded.error is not None:
        raise StartupFailed(_describe(guarded.error), RUNTIME_FAILURE)
    return 1 if app.state.failure else 0  # a dead backend: non-zero, so on-failure restart policies act


def _settings(args: argparse.Namespace) -> Any:
    try:
        return settings_from_args(args)
    except SystemExit as exc:  # settings_from_args reports a validation error as a multi-line message
        if not isinstance(exc.code, str):
            raise
        text = exc.code.removeprefix("hammer: ")
        raise StartupFailed(f"{text} (see `hammer serve --help`)") from None


def _preflight(settings: Any) -> Any:
    """Check what can be checked before uvicorn starts; the backend, loaded (not started) if it can be."""
    from hammer.server.backends import load_backend
    from hammer.server.backends.base import EngineUnavailable

    try:
        settings.api_keys()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartupFailed(f"cannot read --api-key-file {settings.api_key_file}: {reason} "
                            "(pass a readable text file with one key per line)") from None
    try:
        adapters = settings.lora_adapters()
    except ValueError as exc:
        raise StartupFailed(str(exc)) from None
    try:
        backend = load_backend(settings)
    except ValueError as exc:
        raise StartupFailed(f"{exc} (--backend)") from None
    except EngineUnavailable as exc:
        raise StartupFailed(exc.message) from None
    if settings.backend == "llama":
        _check_gguf(settings)
        for name, path in adapters:
            _check_adapter_gguf(name, path)
    elif settings.backend == "vllm":
        from hammer.server.backends.vllm import check_settings

        try:
            check_settings(settings)
        except EngineUnavailable as exc:
            raise StartupFailed(exc.message) from None
    _check_port(settings.host, settings.port, "--port")
    if settings.metrics_port is not None:
        _check_port(settings.host, settings.metrics_port, "--metrics-port")
    return backend


def _check_gguf(settings: Any) -> None:
    try:
        path = settings.model_path()
    except FileNotFoundError as exc:
        raise StartupFailed(str(exc)) from None
    if os.path.isdir(path):
        raise StartupFailed(f"--model {path} is a directory, not a GGUF file (the llama backend serves .gguf files; "
                            "a Hugging Face model directory needs --backend vllm)")
    if not os.path.isfile(path):
        raise StartupFailed(f"model file not found: {path} (check --model: it expects a .gguf file)")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise StartupFailed(f"cannot read the model file {path}: {exc.strerror} (check its permissions)") from None
    if magic != b"GGUF":
        raise StartupFailed(f"{path} is not a GGUF file (--model expects a llama.cpp .gguf file, e.g. from "
                            "`hammer export`; a Hugging Face model needs --backend vllm)")


def _check_adapter_gguf(name: str, path: str) -> None:
    """A ``--lora`` adapter must be a readable GGUF file; whether it fits the model, llama.cpp says at load."""
    flag = f"--lora {name}={path}"
    if not os.path.isfile(path):
        raise StartupFailed(f"{flag}: no such file (the llama backend takes a GGUF LoRA adapter, e.g. from "
                            "`hammer export --adapter-gguf`)")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise StartupFailed(f"{flag}: cannot read it: {exc.strerror}") from None
    if magic != b"GGUF":
        raise StartupFailed(f"{flag}: not a GGUF file (convert a PEFT adapter with `hammer export --adapter DIR "
                            "--adapter-gguf ADAPTER.gguf`)")


def _check_port(host: str, port: int, flag: str) -> None:
    """Fail early, in one line, where uvicorn would fail only after loading the model."""
    if not 0 <= port <= 65535:
        raise StartupFailed(f"{flag} {port} is not a port number (use 1-65535)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise StartupFailed(f"cannot listen on --host {host}: {exc.strerror} (pass an address of this machine, "
                            "e.g. 127.0.0.1 or 0.0.0.0)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupFailed(f"port {port} on {host} is already in use (stop what listens there, "
                                    f"or pass another {flag})", RUNTIME_FAILURE) from None
            if exc.errno == errno.EACCES:
                raise StartupFailed(f"no permission to listen on port {port} (ports below 1024 need root: "
                                    f"pass another {flag})", RUNTIME_FAILURE) from None
            raise StartupFailed(f"cannot listen on {host}:{port}: {exc.strerror} (check --host and {flag})",
                                RUNTIME_FAILURE) from None


def _describe(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return message if hasattr(error, "message") else f"startup failed: {type(error).__name__}: {message}"


def _drop_startup_failed(record: logging.LogRecord) -> bool:
    return record.getMessage() != "Application startup failed. Exiting."


def _forced_quit_in_one_line(record: logging.LogRecord) -> bool:
    """A second Ctrl-C cancels what still runs: uvicorn logs each cancelled request with its traceback,
    and Starlette reports the cancelled shutdown as a failure with another. Say what happened instead."""
    if record.levelno < logging.ERROR:
        return True
    if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
        record.msg, record.args, record.exc_info = "forced to quit: a request still running was cancelled", (), None
    elif "CancelledError" in record.getMessage():
        record.msg, record.args = "forced to quit: the server's shutdown was cancelled", ()
    return True


class _StartupGuard:
    """ASGI wrapper that keeps the exception a failed lifespan startup raised, and keeps its
    traceback out of uvicorn's log (Starlette sends it as the failure message)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        started = False

        async def quiet_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "lifespan.startup.complete":
                started = True
            elif message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, quiet_send)
        except Exception as exc:
            if started:  # a failing shutdown: uvicorn's own report
                raise
            self.error = exc  # reported by ``run``, in one line
