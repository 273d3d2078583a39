"""`hammer export --adapter-gguf`: a PEFT LoRA adapter as a llama.cpp GGUF LoRA adapter, checked against PEFT
itself on the real embedded model."""

from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest
from hammer.training.gguf_convert import ConversionError
from hammer.training.gguf_lora import check_adapter_config

from hammer.cli import main
from tests.training.test_export import make_run

PROMPT = "<|im_start|>user\nWhat is the capital of France? Answer briefly.<|im_end|>\n<|im_start|>assistant\n"


def export_gguf(adapter, output, *flags: str):
    assert main(["export", "--adapter", str(adapter), "--adapter-gguf", str(output), *flags]) == 0
    return output


def llama_cpp_last_logits(adapter_path, tokens: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The last position's logits of the embedded GGUF on llama.cpp, without and with the adapter."""
    import llama_cpp
    from hammer.server.settings import embedded_model_path

    model = llama_cpp.llama_model_load_from_file(str(embedded_model_path()).encode(),
                                                 llama_cpp.llama_model_default_params())
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_threads, params.n_threads_batch = 256, 2, 2
    ctx = llama_cpp.llama_init_from_model(model, params)
    adapter = llama_cpp.llama_adapter_lora_init(model, str(adapter_path).encode())
    assert adapter, "llama.cpp refused the adapter"
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    found = []
    try:
        for handles in (None, (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)):
            llama_cpp.llama_set_adapters_lora(ctx, handles, 0 if handles is None else 1,
                                              None if handles is None else (ctypes.c_float * 1)(1.0))
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            array = (llama_cpp.llama_token * len(tokens))(*tokens)
            assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(array, len(tokens))) == 0
            found.append(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy())
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    return found[0], found[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["a", "qk"])
def test_the_gguf_adapter_moves_llama_cpp_logits_as_peft_moves_the_model(name, peft_adapters, hf_model_dir, tmp_path):
    """The change the adapter makes to the next-token logits, in PEFT on the float model and in llama.cpp on
    the 4-bit GGUF: the same direction and size. ``qk`` adapts only the query/key projections, whose rows
    llama.cpp keeps in another order."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = export_gguf(peft_adapters[name], tmp_path / f"{name}.gguf")
    tokenizer = AutoTokenizer.from_pretrained(hf_model_dir)
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(hf_model_dir, dtype=torch.float32)
    with torch.no_grad():
        hf_base = model(ids).logits[0, -1].numpy()
        hf_adapted = PeftModel.from_pretrained(model, str(peft_adapters[name]))(ids).logits[0, -1].numpy()
    base, adapted = llama_cpp_last_logits(output, ids[0].tolist())
    expected, got = hf_adapted - hf_base, adapted - base
    assert np.abs(got).max() > 1.0  # the adapter does change the logits
    # Not 1: the GGUF's base is 4-bit, and llama.cpp rounds activations for it. Measured 0.86-0.98 (random
    # adapters of several seeds); 0.37 with the query/key rows unpermuted.
    assert np.corrcoef(expected, got)[0, 1] > 0.75
    assert 0.7 < np.linalg.norm(got) / np.linalg.norm(expected) < 1.4  # scaled by alpha / rank, as PEFT does


@pytest.mark.slow
def test_the_file_is_what_llama_cpp_expects_and_declares_its_sampling(peft_adapters, tmp_path, capsys):
    import gguf

    output = export_gguf(peft_adapters["a"], tmp_path / "a.gguf", "--top-p", "0.9")
    assert capsys.readouterr().out.startswith(f"wrote {output}: LoRA adapter, ")
    reader = gguf.GGUFReader(output)
    fields = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama"
    assert fields["adapter.lora.alpha"] == 16.0  # r 8, lora_alpha 16: llama.cpp scales by alpha / rank as PEFT
    assert fields["general.sampling.temp"] == 0.0  # the default: greedy, as BFCL runs Hammer
    assert fields["general.sampling.top_p"] == pytest.approx(0.9)
    shapes = {t.name: t.shape.tolist() for t in reader.tensors}
    # GGUF lists dimensions innermost first: lora_a is rank × in (576), lora_b out × rank.
    assert shapes["blk.0.attn_q.weight.lora_a"] == [576, 8] and shapes["blk.0.attn_k.weight.lora_b"] == [8, 192]
    assert len(shapes) == 30 * 7 * 2  # 30 blocks, 7 linear layers each, A and B


def test_an_unfinished_run_is_offered_its_checkpoint_with_the_same_flag(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["export", "--adapter", str(run), "--adapter-gguf", str(tmp_path / "a.gguf")]) == 2
    assert f"--adapter {run}/checkpoint-10 --adapter-gguf {tmp_path / 'a.gguf'}`" in capsys.readouterr().err


@pytest.mark.parametrize(("config", "named"), [
    ({"use_dora": True}, "DoRA (use_dora)"),
    ({"rank_pattern": {"q_proj": 4}}, "per-module ranks (rank_pattern)"),
    ({"modules_to_save": ["lm_head"]}, "fully trained modules (modules_to_save)"),
    ({"bias": "all"}, "trained biases (bias 'all')"),
])
def test_what_llama_cpp_cannot_apply_is_refused_by_name(config, named):
    with pytest.raises(ConversionError, match="llama.cpp LoRA adapters cannot hold .*" + re.escape(named)):
        check_adapter_config({"peft_type": "LORA", "r": 8, "lora_alpha": 16, **config})
