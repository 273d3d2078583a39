"""LoRA adapter + base → merged HF model → GGUF → quantized GGUF that ``hammer serve`` loads."""

from __future__ import annotations

import json
from pathlib import Path

from training.quantize import quantize

BASE_RECORD = "hammer_base.json"  # written by `hammer train` so `hammer export` can find the base


def recorded_base(adapter: str | Path) -> str | None:
    """The base model the adapter was trained on, as its training config named it."""
    record = Path(adapter) / BASE_RECORD
    return json.loads(record.read_text(encoding="utf-8"))["base_model"] if record.is_file() else None


def merge(adapter: str | Path, base: str, merged_dir: str | Path) -> Path:
    """Fold the LoRA weights into the base and save a plain HF model (float32) with its tokenizer."""
    from peft import PeftModel

    from training.model import load_base

    model, tokenizer = load_base(base)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged_dir = Path(merged_dir)
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir


def export(adapter: str | Path, output: str | Path, base: str | None = None, merged_dir: str | Path | None = None,
           quantization: str = "Q4_K_M") -> Path:
    """Merge, convert and quantize; keeps the merged HF directory (default: OUTPUT without
    ``.gguf`` plus ``-hf``) and returns the quantized file's path."""
    from training.gguf_convert import convert

    base = base or recorded_base(adapter)
    if base is None:
        raise ValueError(f"{adapter} does not record its base model: pass --base")
    output = Path(output)
    merged_dir = Path(merged_dir) if merged_dir else output.with_name(output.stem + "-hf")
    merge(adapter, base, merged_dir)
    if quantization == "F16":
        return convert(merged_dir, output, "f16")
    intermediate = output.with_name(output.stem + ".f16.gguf")
    try:
        convert(merged_dir, intermediate, "f16")
        return quantize(intermediate, output, quantization)
    finally:
        intermediate.unlink(missing_ok=True)
