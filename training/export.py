"""LoRA adapter + base → merged HF model → GGUF → quantized GGUF that ``hammer serve`` loads; or the adapter
alone as a GGUF LoRA adapter for ``hammer serve --lora``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hammer.training.quantize import quantize

BASE_RECORD = "hammer_base.json"  # written by `hammer train` so `hammer export` can find the base


ADAPTER_FILES = ("adapter_config.json",)  # what PEFT's save_pretrained writes, with the weights
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def recorded_base(adapter: str | Path) -> str | None:
    """The base model the adapter was trained on, as its training config named it. A checkpoint
    (``RUN/checkpoint-N``) has it from its run directory."""
    adapter = Path(adapter)
    places = [adapter] + ([adapter.parent] if _CHECKPOINT.match(adapter.name) else [])
    for place in places:
        record = place / BASE_RECORD
        if record.is_file():
            return json.loads(record.read_text(encoding="utf-8"))["base_model"]
    return None


def write_base_record(run_dir: str | Path, base: str) -> None:
    """Record ``base`` in ``run_dir`` (``hammer train`` does so before the first step, so the
    checkpoints of an interrupted run can be exported too)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / BASE_RECORD).write_text(json.dumps({"base_model": base}) + "\n", encoding="utf-8")


def is_adapter(path: str | Path) -> bool:
    """Whether ``path`` holds a saved LoRA adapter (a run's final one or a checkpoint's)."""
    return all((Path(path) / name).is_file() for name in ADAPTER_FILES)


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The ``checkpoint-N`` in ``run_dir`` with the highest N that holds an adapter, if any."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _CHECKPOINT.match(p.name)) and is_adapter(p)]
    return max(found)[1] if found else None


def check_adapter(adapter: str | Path, output: str | Path = "MODEL.gguf", base: str | None = None,
                  output_flag: str = "--output") -> None:
    """Raise a ``ValueError`` saying what is wrong when ``adapter`` is no exportable adapter: a
    missing directory, a run that did not finish (offering its newest checkpoint), or neither."""
    adapter = Path(adapter)
    if not adapter.is_dir():
        raise FileNotFoundError(f"no such adapter directory: {adapter}")
    if is_adapter(adapter):
        return
    checkpoint = newest_checkpoint(adapter)
    if checkpoint is None:
        raise ValueError(f"{adapter} holds no LoRA adapter (no adapter_config.json) and no checkpoint-N: "
                         "pass the output_dir of `hammer train` or one of its checkpoint-N directories")
    base_arg = "" if base is None and recorded_base(checkpoint) else f" --base {base or 'BASE'}"
    raise ValueError(f"the run in {adapter} did not finish (no final adapter); its newest checkpoint is "
                     f"{checkpoint}: export that with `hammer export --adapter {checkpoint} {output_flag} {output}"
                     f"{base_arg}` or resume training (rerun `hammer train` with the same config; it "
                     "continues from the newest checkpoint)")


def merge(adapter: str | Path, base: str, merged_dir: str | Path) -> Path:
    """Fold the LoRA weights into the base and save a plain HF model (float32) with its tokenizer."""
    from hammer.training.model import load_base
    from peft import PeftModel

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
    from hammer.training.gguf_convert import convert

    check_adapter(adapter, output, base)
    base = base or recorded_base(adapter)
    if base is None:
        raise ValueError(f"{adapter} does not record its base model ({BASE_RECORD}, which `hammer train` "
                         "writes in its output_dir): pass --base, e.g. --base embedded")
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


def export_adapter_gguf(adapter: str | Path, output: str | Path, base: str | None = None,
                        sampling: dict[str, float] | None = None) -> Path:
    """Convert the adapter to a llama.cpp GGUF LoRA adapter (F16, not merged) for the base it was trained
    on; ``sampling`` is declared in it as its recommended ``temperature``/``top_p``."""
    from hammer.training.gguf_lora import base_config, convert_adapter

    check_adapter(adapter, output, base, output_flag="--adapter-gguf")
    base = base or recorded_base(adapter)
    if base is None:
        raise ValueError(f"{adapter} does not record its base model ({BASE_RECORD}, which `hammer train` "
                         "writes in its output_dir): pass --base, e.g. --base embedded")
    return convert_adapter(adapter, output, base_config(base), sampling)
