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


# -- LoRA adapters (issue 26: tests/server/backends/test_lora.py, tests/training/test_gguf_lora.py) --
@pytest.fixture(scope="session")
def peft_adapters(tmp_path_factory: pytest.TempPathFactory, hf_model_dir: Path) -> dict[str, Path]:
    """Small PEFT LoRA adapters on the embedded model as `hammer train` leaves them (adapter files and the
    base record), with A and B random rather than trained (B is zero at PEFT's init: a no-op). ``a`` and
    ``b`` adapt every linear layer; ``qk`` only the query and key projections, whose rows the GGUF
    converters permute."""
    import torch
    from hammer.training.export import write_base_record
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("peft-adapters")
    made = {}
    for seed, (name, targets) in enumerate({"a": "all-linear", "b": "all-linear", "qk": ["q_proj", "k_proj"]}.items()):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(hf_model_dir, dtype=torch.float32)
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False))
        with torch.no_grad():  # small enough that the model still answers sensibly, large enough to change it
            for parameter_name, parameter in peft.named_parameters():
                if "lora_B" in parameter_name:
                    parameter.mul_(0.3)
        made[name] = root / name
        peft.save_pretrained(made[name])
        write_base_record(made[name], "embedded")
    return made
