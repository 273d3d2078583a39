"""GGUF quantization through llama.cpp's own quantizer (``llama_cpp.llama_model_quantize``), and
a report of the tensor types it produced (``quantization_mix``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

QUANTIZATIONS = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16")


def quantize(source: str | Path, output: str | Path, quantization: str = "Q4_K_M",
             threads: int | None = None) -> Path:
    """Quantize the GGUF ``source`` to ``output``. Tensors whose rows do not fit the k-quant
    block size (e.g. SmolLM2's 576 columns) get llama.cpp's usual fallback type."""
    import ctypes

    import llama_cpp

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quantization}")
    params.nthread = threads or os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(output).encode(), ctypes.byref(params))
    if status != 0:
        raise RuntimeError(f"llama.cpp failed to quantize {source} to {quantization} (status {status})")
    return Path(output)


K_QUANT_BLOCK = 256  # values per k-quant super-block: a row must be a multiple of this to be k-quantized
_K_QUANTS = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"}
_FLOATS = {"F32": 3, "F16": 2, "BF16": 2, "F64": 3}


@dataclass(frozen=True)
class QuantizationMix:
    """The tensor types a quantized GGUF holds; ``str()`` is the line ``hammer export`` prints,
    e.g. ``Q4_K_M requested: 92 tensors Q4_K, 166 Q5_0 (fallback: rows of 576 values do not fit
    256-wide k-quant blocks), 14 F32; 98.3 MiB``."""

    requested: str
    counts: dict[str, int]  # tensor type name → number of tensors, in report order
    fallback_types: tuple[str, ...]  # non-k-quant types given to rows that do not fit k-quant blocks
    fallback_widths: tuple[int, ...]  # the row widths (values) of those tensors
    size_bytes: int

    def __str__(self) -> str:
        parts = []
        for i, (name, count) in enumerate(self.counts.items()):
            part = f"{count} tensor{'s' if count != 1 else ''} {name}" if i == 0 else f"{count} {name}"
            if self.fallback_types and name == self.fallback_types[-1]:
                widths = " or ".join(str(w) for w in self.fallback_widths)
                part += (f" (fallback: rows of {widths} values do not fit {K_QUANT_BLOCK}-wide k-quant blocks)")
            parts.append(part)
        return f"{self.requested} requested: {', '.join(parts)}; {self.size_bytes / 2**20:.1f} MiB"


def quantization_mix(path: str | Path, requested: str) -> QuantizationMix:
    """Read the tensor types of the GGUF at ``path`` (with ``gguf.GGUFReader``) and say which are
    llama.cpp's fallback for rows a k-quant (``requested`` Q*_K*) cannot hold."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    counts: dict[str, int] = {}
    fallback: dict[str, set[int]] = {}
    k_requested = "_K" in requested
    for tensor in reader.tensors:
        name = tensor.tensor_type.name
        counts[name] = counts.get(name, 0) + 1
        width = int(tensor.shape[0])  # GGUF shapes list the row length (ne0) first
        if k_requested and name not in _K_QUANTS and name not in _FLOATS and width % K_QUANT_BLOCK:
            fallback.setdefault(name, set()).add(width)

    def order(item: tuple[str, int]) -> tuple[int, int, str]:
        name, count = item
        rank = 0 if name in _K_QUANTS else 1 if name in fallback else _FLOATS.get(name, 1)
        return rank, -count, name

    ordered = dict(sorted(counts.items(), key=order))
    fallback_types = tuple(name for name in ordered if name in fallback)
    widths = tuple(sorted(set().union(*fallback.values()))) if fallback else ()
    return QuantizationMix(requested, ordered, fallback_types, widths, Path(path).stat().st_size)
