"""End to end on CPU with real parts: LoRA steps on the embedded SmolLM2-135M, export to
Q4_K_M GGUF, load in llama.cpp, compare logits with the merged HF model, serve a tool call."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
from hammer.training.build import build
from hammer.training.config import TrainConfig

from tests.conftest import running_server
from tests.training.conftest import SAMPLE

pytestmark = [pytest.mark.slow, pytest.mark.training]

STEPS = 3


def _config(tmp: Path, **overrides) -> TrainConfig:
    # Short rows only (max_length 600 keeps the 2-tool prompts) so a step takes seconds on 2 cores.
    settings = {"base_model": "embedded", "train_file": str(tmp / "train.jsonl"), "output_dir": str(tmp / "run"),
                "max_steps": STEPS, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
                "learning_rate": 1e-3, "warmup_ratio": 0.0, "lora_rank": 8, "lora_alpha": 16, "max_length": 600,
                "logging_steps": 1, "save_steps": STEPS, "max_samples": 12}
    return TrainConfig(**{**settings, **overrides})


def _fixed_batch_loss(trainer) -> float:
    import torch

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}).loss
    trainer.model.train()
    return float(loss)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from hammer.training.train import build_trainer, run_training

    tmp = tmp_path_factory.mktemp("train")
    build(SAMPLE, tmp / "train.jsonl", masking_ratio=0.33, irrelevance_ratio=0.1, seed=0)
    config = _config(tmp)
    trainer = build_trainer(config)
    before = _fixed_batch_loss(trainer)
    adapter = run_training(trainer, config)
    after = _fixed_batch_loss(trainer)
    return {"tmp": tmp, "adapter": adapter, "before": before, "after": after, "trainer": trainer}


class TestTrain:
    def test_loss_on_a_fixed_batch_goes_down(self, trained):
        assert trained["after"] < trained["before"] - 0.05, (trained["before"], trained["after"])

    def test_optimizer_really_stepped_and_loss_is_on_completions_only(self, trained):
        trainer = trained["trainer"]
        assert trainer.state.global_step == STEPS
        row = trainer.train_dataset[0]
        labelled = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
        text = trainer.processing_class.decode(labelled)
        assert text.startswith("```") and text.endswith("```<|im_end|>"), text

    def test_adapter_checkpoint_and_base_record_are_saved(self, trained):
        adapter = trained["adapter"]
        assert (adapter / "adapter_model.safetensors").is_file()
        assert (adapter / f"checkpoint-{STEPS}").is_dir()
        assert json.loads((adapter / "hammer_base.json").read_text()) == {"base_model": "embedded"}
        lora = json.loads((adapter / "adapter_config.json").read_text())
        assert lora["r"] == 8 and {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} \
            <= set(lora["target_modules"])

    def test_resume_continues_from_the_checkpoint(self, trained):
        from hammer.training.train import build_trainer, run_training
        from transformers import TrainerCallback

        steps: list[int] = []

        class Record(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                steps.append(state.global_step)

        config = _config(trained["tmp"], max_steps=STEPS + 1, output_dir=str(trained["adapter"]))
        trainer = build_trainer(config)
        trainer.add_callback(Record())
        run_training(trainer, config)
        assert steps == [STEPS + 1]


@pytest.fixture(scope="module")
def exported(trained):
    from hammer.training.export import export

    out = trained["tmp"] / "model-Q4_K_M.gguf"
    path = export(trained["adapter"], out)  # base found through hammer_base.json
    return {"gguf": path, "merged": trained["tmp"] / "model-Q4_K_M-hf"}


class TestExport:
    def test_q4_k_m_gguf_and_merged_dir(self, exported):
        import gguf

        reader = gguf.GGUFReader(str(exported["gguf"]))
        file_type = reader.fields["general.file_type"]
        assert int(file_type.parts[file_type.data[0]][0]) == gguf.LlamaFileType.MOSTLY_Q4_K_M
        assert (exported["merged"] / "model.safetensors").is_file()
        assert not (exported["gguf"].with_name(exported["gguf"].stem + ".f16.gguf")).exists()

    def test_llama_cpp_logits_match_the_merged_model(self, exported):
        import torch
        from llama_cpp import Llama
        from transformers import AutoModelForCausalLM

        prompt = json.loads((exported["gguf"].parent / "train.jsonl").read_text().splitlines()[0])["prompt"]
        llm = Llama(str(exported["gguf"]), n_ctx=2048, logits_all=True, verbose=False, n_threads=2)
        try:
            tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)[-200:]
            llm.eval(tokens)
            ours = np.array(llm.scores[: len(tokens)])
        finally:
            llm.close()
        model = AutoModelForCausalLM.from_pretrained(exported["merged"])
        with torch.no_grad():
            theirs = model(torch.tensor([tokens])).logits[0].numpy()
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.97
        assert (ours.argmax(-1) == theirs.argmax(-1)).mean() > 0.75

    def test_served_model_answers_a_tool_call(self, exported, tmp_path):
        tools = [{"type": "function", "function": {
            "name": "get_current_weather", "description": "Get the current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                           "required": ["city"]}}}]
        with running_server("--model", str(exported["gguf"]), "--n-ctx", "2048",
                            log_path=tmp_path / "server.log") as url:
            response = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
                "model": exported["gguf"].stem, "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
                # One call with a bounded city (and bounded whitespace) fits in 384 tokens whatever the model picks: the test is
                # about the exported model serving a valid call, not about how well it learned.
                "tools": tools, "tool_choice": "required", "parallel_tool_calls": False,
                "temperature": 0, "max_tokens": 384})
        assert response.status_code == 200, response.text
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        call = choice["message"]["tool_calls"][0]["function"]
        assert call["name"] == "get_current_weather"
        jsonschema.validate(json.loads(call["arguments"]), tools[0]["function"]["parameters"])
