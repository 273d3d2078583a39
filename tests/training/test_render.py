from __future__ import annotations

import random

import pytest
from hammer.training.masking import mask_functions
from hammer.training.render import to_prompt_completion
from hammer.training.schema import openai_function

from hammer.prompt_format import Call, parse_calls, render_prompt


def _server_prompt(example, prompt_format="hammer-2.1"):
    """What `hammer serve` renders for an OpenAI request with these tools and this user message."""
    request_tools = [{"type": "function", "function": openai_function(t)} for t in example["tools"]]
    return render_prompt([t["function"] for t in request_tools], [{"role": "user", "content": example["query"]}],
                         prompt_format)


class TestToPromptCompletion:
    @pytest.mark.parametrize("prompt_format", ["hammer-2.1", "hammer-1.0"])
    def test_prompt_is_what_the_server_renders(self, sample, prompt_format):
        for example in sample:
            assert to_prompt_completion(example, prompt_format)["prompt"] == _server_prompt(example, prompt_format)

    def test_masked_prompt_is_what_the_server_renders(self, sample):
        rng = random.Random(0)
        for example in sample:
            masked = mask_functions(example, rng)
            assert to_prompt_completion(masked)["prompt"] == _server_prompt(masked)

    def test_completion_parses_back_to_the_answer(self, sample):
        for example in sample:
            row = to_prompt_completion(example)
            assert row["completion"].startswith("```\n[") and row["completion"].endswith("]\n```")
            assert parse_calls(row["completion"]) == [Call(c["name"], c["arguments"]) for c in example["answers"]]

    def test_hammer_21_layout(self, sample):
        prompt = to_prompt_completion(sample[0])["prompt"]
        assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                 "[BEGIN OF TASK INSTRUCTION]\n")
        assert prompt.endswith(f"<|im_start|>user\n{sample[0]['query']}<|im_end|>\n<|im_start|>assistant\n")
        assert '"required": true' in prompt and "default is 'celsius'" in prompt

    def test_irrelevance_target_is_an_empty_list(self, sample):
        row = to_prompt_completion({**sample[0], "answers": [], "irrelevant": True})
        assert row["completion"] == "```\n[]\n```" and row["irrelevant"]
