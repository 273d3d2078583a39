"""A small HF → GGUF converter for the llama and qwen2 architectures (Hammer's Qwen2.5 bases,
SmolLM2), written with the ``gguf`` package's writer.

llama.cpp's own convert_hf_to_gguf.py is not shipped in any wheel; this covers the two
architectures the training module produces and follows that script where it matters: the
Q/K row permutation for llama's rotary layout, the tensor names from ``gguf``'s name map,
the BPE vocabulary with special tokens marked CONTROL, and the pre-tokenizer identified by
hashing the tokenization of the same check text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}

# convert_hf_to_gguf's check text and the hashes of the BPE pre-tokenizers these
# architectures use (from its get_vocab_base_pre table).
_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
_PRE_TOKENIZERS = {
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}


class ConversionError(ValueError):
    """A model this converter cannot write."""


def convert(model_dir: str | Path, output: str | Path, outtype: str = "f16") -> Path:
    """Write the HF model in ``model_dir`` as a GGUF file (``outtype``: f32 or f16) at ``output``."""
    import gguf
    import numpy as np

    model_dir, output = Path(model_dir), Path(output)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    hf_arch = (config.get("architectures") or ["?"])[0]
    if hf_arch not in ARCHITECTURES:
        raise ConversionError(f"{hf_arch} is not supported (supported: {', '.join(ARCHITECTURES)}); "
                              "use llama.cpp's convert_hf_to_gguf.py and `llama-quantize` instead")
    arch = ARCHITECTURES[hf_arch]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}[outtype]

    writer = gguf.GGUFWriter(str(output), arch)
    _write_hparams(writer, config, file_type)
    _write_vocab(writer, model_dir, config)

    n_blocks = config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_blocks)
    for hf_name, tensor in _tensors(model_dir):
        if hf_name == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            raise ConversionError(f"no GGUF name for tensor {hf_name}")
        data = tensor.float().numpy()
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, config["num_attention_heads"])
        elif arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, config.get("num_key_value_heads") or config["num_attention_heads"])
        # 1-D tensors (norms, biases) stay f32, as llama.cpp expects.
        data = data.astype(np.float16 if outtype == "f16" and data.ndim > 1 else np.float32)
        writer.add_tensor(name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()
    return output


def _write_hparams(writer: Any, config: dict[str, Any], file_type: Any) -> None:
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope_theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    rope_scaling = config.get("rope_scaling") or {}
    if rope_scaling.get("rope_type", rope_scaling.get("type", "default")) not in ("default", None):
        raise ConversionError(f"rope scaling {rope_scaling} is not supported by this converter")
    writer.add_name(str(config.get("_name_or_path") or "hammer"))
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_file_type(file_type)


def _write_vocab(writer: Any, model_dir: Path, config: dict[str, Any]) -> None:
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    check = sha256(str(tokenizer.encode(_CHECK_TEXT)).encode()).hexdigest()
    if check not in _PRE_TOKENIZERS:
        raise ConversionError(f"unknown BPE pre-tokenizer (hash {check}); use llama.cpp's convert_hf_to_gguf.py")
    vocab_size = config.get("vocab_size", len(tokenizer.get_vocab()))
    reverse = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_PRE_TOKENIZERS[check])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer)


def _tensors(model_dir: Path) -> Iterator[tuple[str, Any]]:
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"no .safetensors weights in {model_dir}")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                yield name, f.get_tensor(name)


def _permute(weights: Any, n_head: int) -> Any:
    """HF's rotate-half Q/K rows → llama.cpp's interleaved rotary layout."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))
