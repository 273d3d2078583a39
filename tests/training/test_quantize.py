"""The type-mix report `hammer export` prints, read back from a small GGUF written here."""

from __future__ import annotations

import numpy as np
import pytest
from hammer.training.quantize import quantization_mix

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType


def write_gguf(path, tensors):
    """A GGUF whose tensors have the given (type, rows, row width); quantized data is zero bytes."""
    writer = gguf.GGUFWriter(str(path), "llama")
    for i, (kind, rows, width) in enumerate(tensors):
        if kind in (Q.F32, Q.F16):
            data = np.zeros((rows, width), np.float32 if kind == Q.F32 else np.float16)
            writer.add_tensor(f"t{i}.weight", data)
        else:
            block, size = gguf.GGML_QUANT_SIZES[kind]
            writer.add_tensor(f"t{i}.weight", np.zeros((rows, width // block * size), np.uint8), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class TestQuantizationMixReport:
    def test_smollm2_like_mix_names_the_fallback_and_its_reason(self, tmp_path):
        path = write_gguf(tmp_path / "m.gguf", [(Q.Q4_K, 4, 1536), (Q.Q4_K, 4, 1536), (Q.Q6_K, 4, 1536),
                                                 (Q.Q5_0, 4, 576), (Q.Q5_0, 4, 576), (Q.Q5_0, 4, 576),
                                                 (Q.Q8_0, 4, 576), (Q.F32, 1, 576)])
        mix = quantization_mix(path, "Q4_K_M")
        assert mix.counts == {"Q4_K": 2, "Q6_K": 1, "Q5_0": 3, "Q8_0": 1, "F32": 1}
        assert mix.fallback_types == ("Q5_0", "Q8_0") and mix.fallback_widths == (576,)
        size = path.stat().st_size / 2**20
        assert str(mix) == ("Q4_K_M requested: 2 tensors Q4_K, 1 Q6_K, 3 Q5_0, 1 Q8_0 (fallback: rows of 576 "
                            f"values do not fit 256-wide k-quant blocks), 1 F32; {size:.1f} MiB")

    def test_qwen_like_widths_have_no_fallback(self, tmp_path):
        path = write_gguf(tmp_path / "m.gguf", [(Q.Q4_K, 2, 1536), (Q.Q6_K, 2, 3584), (Q.F32, 1, 1536)])
        mix = quantization_mix(path, "Q4_K_M")
        assert mix.fallback_types == () and "fallback" not in str(mix)
        assert str(mix).startswith("Q4_K_M requested: 1 tensor Q4_K, 1 Q6_K, 1 F32; ")

    def test_legacy_type_requested_is_not_a_fallback(self, tmp_path):
        path = write_gguf(tmp_path / "m.gguf", [(Q.Q8_0, 2, 576), (Q.Q8_0, 2, 576), (Q.F16, 2, 64)])
        mix = quantization_mix(path, "Q8_0")
        assert str(mix).startswith("Q8_0 requested: 2 tensors Q8_0, 1 F16; ") and not mix.fallback_types

    def test_several_fallback_widths_are_listed(self, tmp_path):
        path = write_gguf(tmp_path / "m.gguf", [(Q.Q5_0, 1, 576), (Q.Q5_0, 1, 960), (Q.Q4_K, 1, 256)])
        assert "(fallback: rows of 576 or 960 values do not" in str(quantization_mix(path, "Q4_K_S"))


class TestExportCommandPrintsTheMix:
    def test_output_line_carries_the_mix(self, tmp_path, monkeypatch, capsys):
        from hammer.cli import main

        path = write_gguf(tmp_path / "m.gguf", [(Q.Q4_K, 2, 256), (Q.F32, 1, 256)])
        monkeypatch.setattr("hammer.training.export.export", lambda *args: path)
        assert main(["export", "--adapter", "run", "--output", str(path)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"wrote {path}: Q4_K_M requested: 1 tensor Q4_K, 1 F32; ")
        assert f"hammer serve --model {path}" in out
