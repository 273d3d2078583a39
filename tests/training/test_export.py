"""`hammer export` on run directories laid out as `hammer train` leaves them (no real training)."""

from __future__ import annotations

import json

import pytest
from hammer.training import export as export_module
from hammer.training.export import BASE_RECORD, check_adapter, newest_checkpoint, recorded_base

from hammer.cli import main

# What a Trainer checkpoint of a PEFT model holds (transformers' _save_checkpoint): the adapter
# (save_pretrained), the tokenizer, and the optimizer/scheduler/RNG/trainer state.
CHECKPOINT_FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
                    "trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth")


def make_run(tmp_path, steps=(5, 10), finished=False, record=True):
    run = tmp_path / "run"
    run.mkdir()
    for step in steps:
        checkpoint = run / f"checkpoint-{step}"
        checkpoint.mkdir()
        for name in CHECKPOINT_FILES:
            (checkpoint / name).write_text("{}")
    if record:  # `hammer train` records the base before the first step
        (run / BASE_RECORD).write_text(json.dumps({"base_model": "embedded"}))
    if finished:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            (run / name).write_text("{}")
    return run


class TestUnfinishedRunIsNamed:
    def test_message_names_the_cause_and_the_newest_checkpoint(self, tmp_path):
        run = make_run(tmp_path, steps=(5, 10, 20))
        with pytest.raises(ValueError) as info:
            check_adapter(run, "m.gguf")
        assert str(info.value) == (
            f"the run in {run} did not finish (no final adapter); its newest checkpoint is {run}/checkpoint-20: "
            f"export that with `hammer export --adapter {run}/checkpoint-20 --output m.gguf` or resume training "
            "(rerun `hammer train` with the same config; it continues from the newest checkpoint)")

    def test_newest_is_by_step_number_and_must_hold_an_adapter(self, tmp_path):
        run = make_run(tmp_path, steps=(9, 10, 100))
        (run / "checkpoint-100" / "adapter_config.json").unlink()  # interrupted while saving
        assert newest_checkpoint(run) == run / "checkpoint-10"

    def test_without_a_recorded_base_the_offer_includes_base(self, tmp_path):
        run = make_run(tmp_path, record=False)
        with pytest.raises(ValueError, match=r"--adapter \S+checkpoint-10 --output m.gguf --base BASE`"):
            check_adapter(run, "m.gguf")

    def test_cli_exits_2_with_one_line(self, tmp_path, capsys):
        run = make_run(tmp_path)
        assert main(["export", "--adapter", str(run), "--output", str(tmp_path / "m.gguf")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"hammer export: the run in {run} did not finish (no final adapter)")
        assert len(err.strip().splitlines()) == 1 and "pass --base" not in err


class TestOtherBadAdapterDirectories:
    def test_missing_directory(self, tmp_path, capsys):
        assert main(["export", "--adapter", str(tmp_path / "nope"), "--output", str(tmp_path / "m.gguf")]) == 2
        assert capsys.readouterr().err == f"hammer export: no such adapter directory: {tmp_path / 'nope'}\n"

    def test_directory_without_adapter_or_checkpoints(self, tmp_path):
        with pytest.raises(ValueError, match="holds no LoRA adapter"):
            check_adapter(tmp_path)

    def test_finished_run_passes(self, tmp_path):
        check_adapter(make_run(tmp_path, finished=True))


class TestCheckpointExports:
    def test_checkpoint_finds_its_base_in_the_run_directory(self, tmp_path):
        run = make_run(tmp_path)
        assert recorded_base(run / "checkpoint-10") == "embedded"
        assert recorded_base(run) == "embedded"

    def test_export_of_a_checkpoint_merges_it_with_the_recorded_base(self, tmp_path, monkeypatch):
        run = make_run(tmp_path)
        calls = {}
        monkeypatch.setattr(export_module, "merge", lambda adapter, base, merged: calls.update(merge=(adapter, base)))
        monkeypatch.setattr("hammer.training.gguf_convert.convert", lambda src, out, kind: out)
        monkeypatch.setattr(export_module, "quantize", lambda src, out, q: out)
        out = export_module.export(run / "checkpoint-10", tmp_path / "m.gguf")
        assert out == tmp_path / "m.gguf" and calls["merge"] == (run / "checkpoint-10", "embedded")


class TestCheckpointMergesWithPeft:
    """A checkpoint directory, optimizer state and all, loads as a PEFT adapter and merges."""

    def test_merge_reads_a_trainer_style_checkpoint(self, tmp_path, monkeypatch):
        torch = pytest.importorskip("torch")
        pytest.importorskip("peft")
        from peft import LoraConfig, get_peft_model
        from transformers import LlamaConfig, LlamaForCausalLM

        def tiny():
            torch.manual_seed(0)
            return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))

        checkpoint = tmp_path / "run" / "checkpoint-3"
        lora = get_peft_model(tiny(), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
        lora.save_pretrained(checkpoint)
        for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
            (checkpoint / name).write_text("{}")

        class Tokenizer:
            def save_pretrained(self, path):
                (path / "tokenizer.json").write_text("{}")

        monkeypatch.setattr("hammer.training.model.load_base", lambda base: (tiny(), Tokenizer()))
        merged_dir = export_module.merge(checkpoint, "tiny", tmp_path / "merged")
        merged = LlamaForCausalLM.from_pretrained(merged_dir)
        base = tiny()
        assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)
        assert torch.equal(merged.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
