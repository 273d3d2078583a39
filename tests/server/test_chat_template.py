"""Chat templates render exactly as transformers renders them, on the real templates of three models.

The templates come from where they ship, not from copies here: SmolLM2's from the embedded GGUF's
metadata; Qwen2.5's (Hammer's base model) and Gemma 3's from the trl package, which stores each
model's original template byte for byte to recognise it (trl/chat_templates/README.md). The
reference is transformers' own ``apply_chat_template``.
"""

from __future__ import annotations

import copy
import datetime
import importlib.resources
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.fake import FakeBackend
from hammer.server.chat_template import (
    TemplateFailed,
    TemplateRejected,
    handles_tool_calls,
    render_chat_template,
    usable_template,
)
from hammer.server.settings import Settings, embedded_model_path

transformers = pytest.importorskip("transformers")


def trl_template(name: str) -> str:
    pytest.importorskip("trl")
    return (importlib.resources.files("trl") / "chat_templates" / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def templates() -> dict[str, tuple[str, str, str]]:
    """Model → (template, bos token, eos token), each as the model ships them."""
    from llama_cpp import Llama

    llama = Llama(str(embedded_model_path()), vocab_only=True, verbose=False)
    token = lambda key: llama.detokenize([int(llama.metadata[key])], special=True).decode()  # noqa: E731
    return {
        "smollm2": (llama.metadata["tokenizer.chat_template"], token("tokenizer.ggml.bos_token_id"),
                    token("tokenizer.ggml.eos_token_id")),
        # Qwen2.5 has no BOS token; <|im_end|> ends its turns (its tokenizer_config.json).
        "qwen2.5": (trl_template("qwen2_5.jinja"), "", "<|im_end|>"),
        "gemma3": (trl_template("gemma3.jinja"), "<bos>", "<eos>"),
    }


def transformers_render(template: str, bos: str, eos: str, messages: list[dict], tools: list | None) -> str:
    """What ``apply_chat_template`` makes of the conversation (a tokenizer that only carries the template)."""
    from tokenizers import Tokenizer, models

    tokens = {"bos_token": bos} if bos else {}
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")), eos_token=eos,
        chat_template=template, **tokens)
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)


def as_transformers_expects(messages: list[dict]) -> list[dict]:
    """OpenAI messages as transformers documents them: tool-call arguments as objects, not JSON text."""
    converted = copy.deepcopy(messages)
    for message in converted:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return converted


TEXT = "Zürich — “quoted” <b>bold</b> & it's ünïcode 🙂"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Wetter für eine Stadt <heute>, in °C",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "z. B. Köln"}},
                   "required": ["city"]}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Köln"}'}}
CONVERSATIONS: dict[str, tuple[list[dict[str, Any]], list | None]] = {
    "one_user_turn": ([{"role": "user", "content": "Hello"}], None),
    "system_and_turns": ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXT},
                          {"role": "assistant", "content": "Sure: " + TEXT}, {"role": "user", "content": "More?"}],
                         None),
    "tools": ([{"role": "user", "content": "Weather in Köln?"}], [WEATHER]),
    "tool_call_and_result": ([{"role": "user", "content": "Weather in Köln?"},
                              {"role": "assistant", "content": None, "tool_calls": [CALL]},
                              {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": "17 °C"}'}],
                             [WEATHER]),
}
# Which conversations each template can render (the others it refuses or fails on, as in transformers).
RENDERS = {
    "smollm2": {"one_user_turn", "system_and_turns", "tools"},
    "qwen2.5": set(CONVERSATIONS),
    "gemma3": {"one_user_turn", "system_and_turns", "tools"},
}


@pytest.mark.parametrize(("model", "conversation"),
                         [(model, name) for model, names in sorted(RENDERS.items()) for name in sorted(names)])
def test_renders_as_transformers(templates, model, conversation):
    template, bos, eos = templates[model]
    messages, tools = CONVERSATIONS[conversation]
    ours = render_chat_template(template, messages, bos, eos, tools=tools)
    assert ours == transformers_render(template, bos, eos, as_transformers_expects(messages), tools)
    if conversation == "system_and_turns":
        assert TEXT in ours  # no escaping of non-ASCII or <>&'


def test_tool_calls_render_as_json_objects(templates):
    template, bos, eos = templates["qwen2.5"]
    messages, tools = CONVERSATIONS["tool_call_and_result"]
    prompt = render_chat_template(template, messages, bos, eos, tools=tools)
    assert '{"name": "get_weather", "arguments": {"city": "Köln"}}' in prompt  # not a JSON string in a string
    assert json.dumps(WEATHER, ensure_ascii=False) in prompt


class TestRefusalsAndFailures:
    def test_gemma_refuses_a_tool_turn_as_transformers_does(self, templates):
        template, bos, eos = templates["gemma3"]
        messages = CONVERSATIONS["tool_call_and_result"][0]
        with pytest.raises(TemplateRejected, match="Conversation roles must alternate"):
            render_chat_template(template, messages, bos, eos)
        with pytest.raises(Exception, match="Conversation roles must alternate"):
            transformers_render(template, bos, eos, as_transformers_expects(messages), None)

    def test_smollm2_fails_on_a_content_less_turn_as_transformers_does(self, templates):
        # Its template adds message['content'] to a string: a bug for calls-only turns, not the client's.
        template, bos, eos = templates["smollm2"]
        messages = CONVERSATIONS["tool_call_and_result"][0]
        with pytest.raises(TemplateFailed, match="has no attribute 'content'"):
            render_chat_template(template, messages, bos, eos)
        with pytest.raises(Exception, match="has no attribute 'content'"):
            transformers_render(template, bos, eos, as_transformers_expects(messages), None)


@pytest.mark.parametrize(("model", "renders_tools"), [("smollm2", False), ("qwen2.5", True), ("gemma3", False)])
def test_tool_support_is_found_by_rendering(templates, model, renders_tools):
    assert handles_tool_calls(templates[model][0]) is renders_tools


def test_a_template_that_only_mentions_tool_calls_does_not_render_them():
    template = "{# tool_calls are not supported #}{% for m in messages %}{{ m.content }}{% endfor %}"
    assert handles_tool_calls(template) is False


class TestEnvironment:
    """The environment transformers gives templates, feature by feature, compared with transformers."""

    @pytest.mark.parametrize("template", [
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}",
        "{% for m in messages %}{% if m.role == 'user' %}{% continue %}{% endif %}{{ m.content }}{% endfor %}",
        "{{ messages | tojson }}",
        "{{ messages[0] | tojson(indent=2, sort_keys=true) }}",
        "{{ messages[0] | tojson(separators=(',', ':')) }}",
        "{{ messages[0] | tojson(ensure_ascii=true) }}",
        "{% generation %}{{ messages[0].content }}{% endgeneration %}",
        "{%- for m in messages %}\n  {{ m.role }}\n{% endfor %}",  # trim_blocks, lstrip_blocks
        "{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}{{ tools is none }}{{ documents is none }}",
    ])
    def test_same_as_transformers(self, template):
        messages = [{"role": "user", "content": TEXT}, {"role": "assistant", "content": "ok"}]
        assert render_chat_template(template, messages, "<s>", "</s>") == \
            transformers_render(template, "<s>", "</s>", messages, None)

    def test_strftime_now(self):
        before = datetime.date.today().isoformat()
        rendered = render_chat_template("{{ strftime_now('%Y-%m-%d') }}", [])
        assert rendered in (before, datetime.date.today().isoformat())

    def test_raise_exception_is_the_clients_input(self):
        with pytest.raises(TemplateRejected, match="^Only user turns$"):
            render_chat_template("{{ raise_exception('Only user turns') }}", [])

    @pytest.mark.parametrize(("template", "words"), [
        ("{% for m in messages %}", "line 1"),  # syntax error
        ("{{ messages[0].content + 1 }}", "TypeError"),  # a bug in the template
        ("{{ ''.__class__.__mro__ }}", "SecurityError"),  # the sandbox holds
    ])
    def test_template_bugs_are_the_templates(self, template, words):
        with pytest.raises(TemplateFailed, match=words):
            render_chat_template(template, [{"role": "user", "content": "x"}])


class TestUsableTemplate:
    """Which template a model is served with: its own if it renders one message, else ChatML."""

    def test_a_template_that_fails_on_every_conversation_is_replaced(self):
        template, problem = usable_template("{{ messages[0].content + 1 }}")
        assert template is None and "TypeError" in problem

    def test_a_template_that_refuses_only_this_conversation_is_kept(self):
        gemma_like = "{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}"
        assert usable_template(gemma_like) == (gemma_like, None)

    def test_named_templates_serve_the_default_one(self):
        named = {"default": "{{ messages[0].content }}", "tool_use": "{{ tools }}"}
        assert usable_template(named) == ("{{ messages[0].content }}", None)
        assert usable_template({"tool_use": "{{ tools }}"})[0] is None


class TemplateBackend(FakeBackend):
    """The scripted backend with a real model's chat template."""

    def __init__(self, settings: Settings, template: str, replies: tuple[str, ...] = ("Hello!",)) -> None:
        super().__init__(settings, replies)
        self.template = template

    def chat_prompt(self, messages):
        return render_chat_template(self.template, messages, "<bos>", "<eos>")

    def chat_template_source(self):
        return self.template


def post(template: str, messages: list[dict]) -> tuple[int, dict]:
    config = Settings(backend="fake")
    with TestClient(create_app(config, TemplateBackend(config, template)), raise_server_exceptions=False) as client:
        response = client.post("/v1/chat/completions", json={"model": "fake", "messages": messages})
    return response.status_code, response.json()


class TestServedErrors:
    def test_a_refused_conversation_is_400_naming_messages(self, templates):
        # Gemma 3 refuses a system turn after the first: the client's conversation.
        status, body = post(templates["gemma3"][0], [{"role": "user", "content": "Hi"},
                                                     {"role": "assistant", "content": "Hello"},
                                                     {"role": "system", "content": "Be brief."},
                                                     {"role": "user", "content": "Bye"}])
        assert status == 400, body
        assert body["error"]["param"] == "messages" and "roles must alternate" in body["error"]["message"]

    def test_a_broken_template_is_a_server_error_not_the_clients(self):
        status, body = post("{{ messages[0].content + 1 }}", [{"role": "user", "content": "Hi"}])
        assert status == 500, body
        assert body["error"]["type"] == "server_error" and body["error"]["code"] == "chat_template_error"
        assert body["error"]["param"] is None

    def test_a_template_with_break_serves(self):
        template = ("{% for m in messages %}{{ m.content }}{% break %}{% endfor %}"
                    "{% if add_generation_prompt %}>{% endif %}")
        status, body = post(template, [{"role": "user", "content": "Hi"}])
        assert status == 200, body


def test_the_answer_pass_renders_calls_and_results_in_a_tool_template(templates):
    # Qwen2.5's template renders calls and results (the probe finds it), so the answer pass gives it
    # the conversation as it is, arguments as objects, and the prompt is transformers' rendering.
    template = templates["qwen2.5"][0]
    config = Settings(backend="fake")
    backend = TemplateBackend(config, template, replies=("```\n[]\n```", "It is 17 °C in Köln."))
    messages, tools = CONVERSATIONS["tool_call_and_result"]
    with TestClient(create_app(config, backend)) as client:
        response = client.post("/v1/chat/completions", json={"model": "fake", "messages": messages, "tools": tools})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "It is 17 °C in Köln."
    answer_prompt = backend.requests[1].prompt
    assert answer_prompt == transformers_render(template, "<bos>", "<eos>", as_transformers_expects(messages), None)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Köln"}}\n</tool_call>' in answer_prompt
    assert '<tool_response>\n{"temp": "17 °C"}\n</tool_response>' in answer_prompt


@pytest.mark.slow
def test_a_model_whose_template_cannot_render_is_served_with_chatml(tmp_path):
    """The real server on a GGUF whose template does not parse: it says so at startup and answers with
    ChatML, as llama.cpp does, instead of a 500 for every request without tools."""
    import subprocess
    import sys

    import openai

    from hammer.processes import served

    broken = tmp_path / "broken-template.gguf"
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(embedded_model_path()), str(broken),
                    "--chat-template", "{% for m in messages %}{{ m.content }}", "--force"],
                   check=True, capture_output=True)
    log = tmp_path / "server.log"
    with served("--model", str(broken), "--n-ctx", "1024", log_path=log) as (_, url):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hi."}],
                                               max_tokens=8, temperature=0)
    assert reply.choices[0].message.content
    said = log.read_text()
    assert "cannot be used" in said and "ChatML" in said and "endfor" in said
    assert "llama_model_loader" not in said  # llama.cpp's own INFO log (every metadata key) stays out of it
