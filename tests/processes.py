"""Start a server process on a free port and wait until it answers (used by tests and benchmarks/).

No pytest here: the benchmark scripts import it too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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
