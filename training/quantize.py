"""GGUF quantization through llama.cpp's own quantizer (``llama_cpp.llama_model_quantize``)."""

from __future__ import annotations

import os
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
