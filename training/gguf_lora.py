"""A PEFT LoRA adapter (the output of ``hammer train``) → a llama.cpp GGUF LoRA adapter, not merged:
``hammer serve --lora NAME=ADAPTER.gguf`` applies it to the base model at run time.

What llama.cpp's loader (``llama_adapter_lora_init``) expects, as llama.cpp's convert_lora_to_gguf.py
writes it: ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` (the scale is
alpha / rank), the base's architecture, and per adapted matrix ``<base tensor>.lora_a`` (rank × in) and
``<base tensor>.lora_b`` (out × rank). Tensor names come from the same ``gguf`` name map as the full
converter (``gguf_convert``), so an adapter fits the GGUF that converter (or llama.cpp's) writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from hammer.training.gguf_convert import ConversionError, _permute

# HF model_type → llama.cpp architecture (the two the full converter writes too).
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}

# Where the GGUF keeps a model's recommended sampling: the keys llama.cpp's converter writes from
# generation_config.json, and the server reads from a model or an adapter alike.
SAMPLING_KEYS = {"temperature": "general.sampling.temp", "top_p": "general.sampling.top_p"}

_PEFT_PREFIX = "base_model.model."
_SUFFIXES = {".lora_A.weight": "lora_a", ".lora_B.weight": "lora_b"}


def base_config(base: str) -> dict[str, Any]:
    """The base model's HF config (``base``: HF dir, hub id, ``.gguf`` file or ``embedded``), without its weights."""
    from hammer.training.model import resolve_base
    from transformers import AutoConfig

    path = Path(resolve_base(base))
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"no such GGUF file: {path}")
        return AutoConfig.from_pretrained(path.parent, gguf_file=path.name).to_dict()
    return AutoConfig.from_pretrained(str(path)).to_dict()


def scaling_alpha(adapter_config: Mapping[str, Any]) -> float:
    """``adapter.lora.alpha`` for llama.cpp, whose scale is alpha / rank: PEFT's scale is alpha / rank, or
    alpha / sqrt(rank) with rsLoRA, so the value written is PEFT's scale times the rank.

    >>> scaling_alpha({"r": 32, "lora_alpha": 64})
    64.0
    >>> scaling_alpha({"r": 16, "lora_alpha": 8, "use_rslora": True})
    32.0
    """
    rank, alpha = adapter_config["r"], adapter_config["lora_alpha"]
    scale = alpha / math.sqrt(rank) if adapter_config.get("use_rslora") else alpha / rank
    return float(scale * rank)


def check_adapter_config(adapter_config: Mapping[str, Any]) -> None:
    """Raise ``ConversionError`` for a PEFT adapter llama.cpp cannot apply as it is."""
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise ConversionError(f"not a LoRA adapter (peft_type {adapter_config['peft_type']})")
    unsupported = {
        "use_dora": "DoRA (use_dora)",
        "rank_pattern": "per-module ranks (rank_pattern)",
        "alpha_pattern": "per-module alphas (alpha_pattern)",
        "modules_to_save": "fully trained modules (modules_to_save)",
    }
    found = [what for key, what in unsupported.items() if adapter_config.get(key)]
    if adapter_config.get("bias", "none") != "none":
        found.append(f"trained biases (bias {adapter_config['bias']!r})")
    if found:
        raise ConversionError(f"llama.cpp LoRA adapters cannot hold {', '.join(found)}; export a merged model "
                              "with `hammer export --output MODEL.gguf` instead")


def convert_adapter(adapter_dir: str | Path, output: str | Path, config: Mapping[str, Any],
                    sampling: Mapping[str, float] | None = None, outtype: str = "f16") -> Path:
    """Write the PEFT adapter in ``adapter_dir`` (trained on a base with HF ``config``) as a GGUF LoRA
    adapter at ``output``; ``sampling`` (``temperature``/``top_p``) is declared as its recommended sampling."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    adapter_dir, output = Path(adapter_dir), Path(output)
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    check_adapter_config(adapter_config)
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ConversionError(f"base model type {model_type!r} is not supported (supported: "
                              f"{', '.join(ARCHITECTURES)}); use llama.cpp's convert_lora_to_gguf.py")
    arch = ARCHITECTURES[model_type]
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConversionError(f"no adapter_model.safetensors in {adapter_dir}")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config["num_hidden_layers"])
    n_head = config["num_attention_heads"]
    heads = {"q_proj": n_head, "k_proj": config.get("num_key_value_heads") or n_head}
    dtype = {"f32": np.float32, "f16": np.float16}[outtype]

    writer = gguf.GGUFWriter(str(output), arch)  # writes general.architecture, which must be the base's
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scaling_alpha(adapter_config))
    writer.add_name(adapter_dir.resolve().name)
    for field, value in (sampling or {}).items():
        writer.add_float32(SAMPLING_KEYS[field], float(value))
    count = 0
    with safe_open(str(weights), framework="pt") as tensors:
        for peft_name in tensors.keys():  # noqa: SIM118 (safe_open is not a dict)
            module, kind = _split(peft_name)
            if module == "lm_head" and config.get("tie_word_embeddings"):
                raise ConversionError("the adapter changes lm_head, which this base ties to the token embeddings: "
                                      "llama.cpp cannot apply that; train without lm_head among the target modules")
            name = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if name is None:
                raise ConversionError(f"no GGUF tensor for {peft_name}")
            data = tensors.get_tensor(peft_name).float().numpy()
            projection = module.rsplit(".", 1)[-1]
            if arch == "llama" and kind == "lora_b" and projection in heads:
                # The base's Q/K rows are permuted into llama.cpp's rotary layout (gguf_convert): B's rows
                # are the rows of B·A, so they get the same permutation.
                data = _permute(data, heads[projection])
            writer.add_tensor(f"{name}.{kind}", data.astype(dtype))
            count += 1
    if not count:
        raise ConversionError(f"{weights} holds no LoRA weights")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return output


def _split(peft_name: str) -> tuple[str, str]:
    """``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` → (``model.layers.0.self_attn.q_proj``,
    ``lora_a``).

    >>> _split("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")
    ('model.layers.0.mlp.down_proj', 'lora_b')
    """
    for suffix, kind in _SUFFIXES.items():
        if peft_name.startswith(_PEFT_PREFIX) and peft_name.endswith(suffix):
            return peft_name[len(_PEFT_PREFIX):-len(suffix)], kind
    raise ConversionError(f"unexpected tensor in the adapter: {peft_name} (only LoRA A/B matrices are supported)")
