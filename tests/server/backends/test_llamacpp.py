"""The llama.cpp backend on the real embedded model."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from server.backends.base import GenerationRequest, SamplingParams
from server.backends.llamacpp import LlamaCppBackend, constraint_grammar
from server.constraints import OutputConstraint, ToolMode, ToolPlan, calls_schema
from server.hammer_format import render_prompt
from server.protocol import FunctionDefinition
from server.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend():
    # One event loop for the module, as in the server: the backend's lock belongs to it.
    loop = asyncio.new_event_loop()
    engine = LlamaCppBackend(Settings(n_ctx=2048))
    loop.run_until_complete(engine.start())
    engine.loop = loop
    yield engine
    loop.run_until_complete(engine.close())
    loop.close()


def generate(backend: LlamaCppBackend, request: GenerationRequest) -> tuple[str, str | None, int]:
    async def run():
        text, finish, tokens = "", None, 0
        async for chunk in backend.generate(request):
            text += chunk.text
            finish, tokens = chunk.finish_reason or finish, chunk.completion_tokens or tokens
        return text, finish, tokens
    return backend.loop.run_until_complete(run())


class TestGrammar:
    def test_control_characters_cannot_appear_in_strings(self):
        grammar = constraint_grammar(OutputConstraint({"type": "string"}))
        assert "char ::= [^\"\\\\\\x7F\\x00-\\x1F]" in grammar

    def test_long_max_length_is_one_bounded_repetition(self):
        grammar = constraint_grammar(OutputConstraint({"type": "string", "maxLength": 4000}))
        assert "char{0,4000}" in grammar and grammar.count("(char") == 0

    def test_strings_end_within_max_length_even_when_the_model_would_loop(self, backend):
        # Asked to repeat forever, the model must still close the string and the list.
        schema = {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 1, "maxItems": 1}
        prompt = ("<|im_start|>user\nRepeat the word 'la' forever, inside a JSON list.<|im_end|>\n"
                  "<|im_start|>assistant\n")
        text, finish, _ = generate(backend, GenerationRequest(prompt, SamplingParams(max_tokens=200, temperature=0),
                                                              OutputConstraint(schema, "```\n", "\n```")))
        assert finish == "stop" and text.startswith("```\n") and text.endswith("\n```")
        value = json.loads(text[4:-4])
        jsonschema.validate(value, schema)


class TestGeneration:
    def test_tool_call_is_schema_valid_and_counted(self, backend):
        function = FunctionDefinition(name="get_weather", description="Weather for a city", parameters={
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"]})
        prompt = render_prompt([function.model_dump()], [{"role": "user", "content": "Weather in Oslo for 3 days?"}])
        schema = calls_schema(ToolPlan(ToolMode.REQUIRED, (function,)), 4, 64)
        text, finish, tokens = generate(backend, GenerationRequest(
            prompt, SamplingParams(max_tokens=100, temperature=0), OutputConstraint(schema, "```\n", "\n```")))
        assert finish == "stop" and tokens > 5
        calls = json.loads(text.strip("`\n"))
        jsonschema.validate(calls, schema)
        assert calls[0]["name"] == "get_weather"

    def test_max_tokens_and_stop(self, backend):
        prompt = backend.chat_prompt([{"role": "user", "content": "Count from 1 to 20, comma separated."}])
        text, finish, tokens = generate(backend, GenerationRequest(prompt, SamplingParams(max_tokens=5, temperature=0)))
        assert finish == "length" and tokens == 5
        text, finish, _ = generate(backend, GenerationRequest(
            prompt, SamplingParams(max_tokens=60, temperature=0, stop=("5",))))
        assert finish == "stop" and "5" not in text

    def test_chat_prompt_uses_the_gguf_template(self, backend):
        prompt = backend.chat_prompt([{"role": "user", "content": "hi"}])
        assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")

    def test_missing_model_file_is_a_clear_error(self, tmp_path):
        from server.errors import BackendUnavailable

        with pytest.raises(BackendUnavailable, match="model file not found"):
            asyncio.run(LlamaCppBackend(Settings(model=str(tmp_path / "nope.gguf"))).start())
