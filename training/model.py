"""Loading a base model for training or merging: an HF directory, a hub id, or a GGUF file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EMBEDDED = "embedded"


def resolve_base(base: str) -> str:
    """``base`` with ``embedded`` replaced by the bundled SmolLM2-135M GGUF's path."""
    if base == EMBEDDED:
        from hammer.server.settings import embedded_model_path

        return str(embedded_model_path())
    return base


def load_base(base: str, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for ``base``; a GGUF file is de-quantized into a plain float model.

    transformers marks a GGUF-loaded model as quantized (``quantization_config``), which
    blocks ``save_pretrained`` and confuses PEFT; rebuilding it from its config without that
    entry and loading the de-quantized weights gives an ordinary model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_base(base)
    dtype = dtype or torch.float32
    path = Path(base)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"no such GGUF file: {path}")
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        config = loaded.config
        del config.quantization_config
        config.dtype = dtype
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:  # a tied head is not in the state dict
            raise RuntimeError(f"GGUF weights do not fit {type(model).__name__}: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        model.tie_weights()
    else:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer

