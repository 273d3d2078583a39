"""The Hammer format module: byte-exact prompts, and the renderer/parser as inverses."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import pytest
from hammer.evaluation.bfcl_checker import modules_replaced
from hypothesis import given, settings
from hypothesis import strategies as st

from hammer.prompt_format import (
    FORMAT_INSTRUCTION,
    TASK_INSTRUCTION_V2_1,
    Call,
    HammerParseError,
    hammer_tool,
    parse_calls,
    render_calls,
    render_prompt,
)
from tests.server.tools_fixtures import TOOLS

FUNCTIONS = [t["function"] for t in TOOLS]
NESTED = {
    "name": "book.hotel",
    "description": "Book a hotel",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "Where"},
            "nights": {"type": "integer", "description": "How long", "default": 1},
            "guest": {"type": "object", "description": "Who",
                      "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                      "required": ["name"]},
        },
        "required": ["city", "guest"],
    },
}


def bfcl_hammer_handler() -> type:
    """BFCL's own Hammer handler, loaded from the bfcl-eval wheel with its heavy imports stubbed."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None:
        pytest.fail("bfcl-eval is not installed (pip install --no-deps bfcl-eval==2026.3.23)")
    source = Path(next(iter(spec.submodule_search_locations))) / "model_handler/local_inference/hammer.py"
    stubs = {
        "bfcl_eval.model_handler.local_inference.base_oss_handler": {"OSSHandler": object},
        "bfcl_eval.model_handler.utils": {"convert_system_prompt_into_user_prompt": lambda m: m},
        "overrides": {"override": lambda f: f},
    }
    namespace: dict = {}
    with modules_replaced({name: types.SimpleNamespace(**attrs) for name, attrs in stubs.items()}):
        exec(compile(source.read_text(), str(source), "exec"), namespace)
    return namespace["HammerHandler"]


class TestPromptIsByteExact:
    @pytest.mark.parametrize("functions", [FUNCTIONS, [NESTED], FUNCTIONS + [NESTED]])
    def test_matches_bfcl_hammer_handler(self, functions):
        messages = [{"role": "user", "content": "Book me a room in Rome for Ann, 2 nights"},
                    {"role": "assistant", "content": "Which dates?"},
                    {"role": "user", "content": "From Friday — ünïcode too"}]
        handler = bfcl_hammer_handler()
        expected = handler._format_prompt(None, json.loads(json.dumps(messages)), json.loads(json.dumps(functions)))
        assert render_prompt(functions, messages) == expected

    def test_layout(self):
        prompt = render_prompt(FUNCTIONS, [{"role": "user", "content": "hi"}])
        assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                 "[BEGIN OF TASK INSTRUCTION]\n" + TASK_INSTRUCTION_V2_1)
        assert f"[BEGIN OF FORMAT INSTRUCTION]\n{FORMAT_INSTRUCTION}\n[END OF FORMAT INSTRUCTION]\n\n<|im_end|>\n" \
            in prompt
        assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")

    def test_hammer_1_0_puts_the_query_in_the_user_turn(self):
        prompt = render_prompt(FUNCTIONS, [{"role": "user", "content": "hi"}], "hammer-1.0")
        assert "[BEGIN OF QUERY]\nhi\n[END OF QUERY]\n\n<|im_end|>\n<|im_start|>assistant\n" in prompt
        assert "2. tool: Returns" not in prompt

    def test_history_renders_calls_and_tool_results(self):
        messages = [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "system", "content": "be brief"},
        ]
        prompt = render_prompt(FUNCTIONS, messages)
        assert ('<|im_start|>assistant\n```\n[{"name": "get_weather", "arguments": {"city": "Oslo"}}]\n```<|im_end|>\n'
                "<|im_start|>tool\nsunny<|im_end|>\n<|im_start|>user\nbe brief<|im_end|>\n") in prompt

    def test_unknown_format_is_rejected(self):
        with pytest.raises(ValueError, match="unknown prompt format"):
            render_prompt(FUNCTIONS, [], "hammer-9")  # type: ignore[arg-type]


class TestHammerTool:
    def test_nested_object_and_required_and_default(self):
        tool = hammer_tool(NESTED)
        params = tool["parameters"]
        assert params["city"]["required"] is True
        assert params["nights"]["description"] == "How longdefault is '1'"
        assert params["guest"]["name"] == {"type": "string", "required": True}
        assert "required" not in params["guest"]["age"]

    def test_input_is_not_mutated(self):
        before = json.dumps(NESTED)
        hammer_tool(NESTED)
        assert json.dumps(NESTED) == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10)
calls = st.lists(st.builds(Call, st.text(min_size=1, max_size=20),
                           st.dictionaries(st.text(max_size=10), json_values, max_size=4)), max_size=4)


class TestRenderParseRoundTrip:
    @given(calls)
    def test_parse_inverts_render(self, value):
        assert parse_calls(render_calls(value)) == value

    @pytest.mark.parametrize("text,expected", [
        ('```json\n[{"name": "f", "arguments": {}}]\n```', [Call("f", {})]),
        ('{"name": "f", "arguments": "{\\"a\\": 1}"}', [Call("f", {"a": 1})]),
        ("  []  ", []),
    ])
    def test_lenient_forms(self, text, expected):
        assert parse_calls(text) == expected

    @pytest.mark.parametrize("text", ["", "hello", "```\n[1]\n```", '[{"name": 3}]', '[{"name": "f", "arguments": 3}]',
                                      '```\n[{"name": "f", "arguments": {"a": 1}}', "[" * 5000])
    def test_garbage_raises_parse_error(self, text):
        with pytest.raises(HammerParseError):
            parse_calls(text)

    @settings(max_examples=300)
    @given(st.text())
    def test_arbitrary_text_never_raises_anything_else(self, text):
        try:
            parse_calls(text)
        except HammerParseError:
            pass
