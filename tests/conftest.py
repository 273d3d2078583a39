"""Shared fixtures: a real ``hammer serve`` subprocess on a free port."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from hammer.server.settings import EMBEDDED_NAME

# Re-exported: the test modules import the process helpers from here (benchmarks from hammer.processes).
from hammer.processes import REPO, VLLM_CPU_ARGS, free_port, running_server, served, vllm_python  # noqa: F401


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server on the embedded SmolLM2 GGUF (llama.cpp backend)."""
    log = tmp_path_factory.mktemp("server") / "llama.log"
    with running_server("--backend", "llama", log_path=log) as url:
        yield url


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
