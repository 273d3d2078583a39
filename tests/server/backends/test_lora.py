"""``hammer serve --lora NAME=PATH``: LoRA adapters served beside their base on the real embedded model, each
request answered by the model its ``model`` names; the embedded model's default adapter; bad flags."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hammer.server.backends.base import GenerationRequest, SamplingParams
from hammer.server.backends.llamacpp import LlamaCppBackend
from hammer.server.settings import DEFAULT_ADAPTER_FILE, EMBEDDED_NAME, Settings, embedded_model_path

from tests.conftest import REPO, running_server

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.", "Weather in Oslo for 3 days?"]


@pytest.fixture(scope="module")
def adapters(peft_adapters: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Adapters ``a`` and ``b`` as GGUF LoRA adapters, through the exporter (which declares temperature 0)."""
    from hammer.training.export import export_adapter_gguf

    folder = tmp_path_factory.mktemp("gguf-adapters")
    return {name: export_adapter_gguf(peft_adapters[name], folder / f"{name}.gguf", sampling={"temperature": 0.0})
            for name in ("a", "b")}


def post(url: str, body: dict, path: str = "/v1/chat/completions") -> tuple[int, dict]:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=30) as response:
        return json.loads(response.read())


def body(model: str, question: str, **extra) -> dict:
    tools = {"tools": [WEATHER]} if question.startswith("Weather") else {}
    return {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 40, **tools, **extra}


def answer(url: str, model: str, question: str, **extra) -> str:
    """The assistant's message (content and calls) for ``question`` asked of ``model``: greedy, unless
    ``temperature=None`` leaves the temperature out."""
    sent = {k: v for k, v in body(model, question, **{"temperature": 0, **extra}).items() if v is not None}
    status, data = post(url, sent)
    assert status == 200, data
    assert data["model"] == model
    message = data["choices"][0]["message"]
    return json.dumps([message.get("content"), [c["function"] for c in message.get("tool_calls") or []]])


def test_two_adapters_and_the_base_side_by_side_each_answer_as_when_served_alone(adapters):
    # A generation's tokens then depend on nothing else: --no-flash-attn, not on what shares its decode steps;
    # --cache-tokens 0, not on whether its prompt was restored (the tokens after a restored prefix are
    # evaluated with another kernel: docs/llamacpp.md). One request at a time per adapter: an adapter's
    # sequences decoded together round differently from one alone (docs/llamacpp.md, "LoRA adapters"); the
    # base's do not, so it gets two.
    isolated = ("--no-flash-attn", "--cache-tokens", "0")
    alone = {}
    with running_server("--lora", f"a={adapters['a']}", *isolated) as url:
        for question in QUESTIONS:
            alone[EMBEDDED_NAME, question] = answer(url, EMBEDDED_NAME, question)
            alone["a", question] = answer(url, "a", question)
    with running_server("--lora", f"b={adapters['b']}", *isolated) as url:
        for question in QUESTIONS:
            alone["b", question] = answer(url, "b", question)
    for question in QUESTIONS[:2]:  # the adapters do change what the model says
        assert len({alone[model, question] for model in (EMBEDDED_NAME, "a", "b")}) == 3, question

    with running_server("--lora", f"a={adapters['a']}", "--lora", f"b={adapters['b']}", *isolated,
                        "--parallel", "4") as url:
        assert [m["id"] for m in get(url, "/v1/models")["data"]] == [EMBEDDED_NAME, "a", "b"]
        assert get(url, "/v1/models/b")["id"] == "b"
        for question in QUESTIONS:
            keys = [(model, question) for model in (EMBEDDED_NAME, EMBEDDED_NAME, "a", "b")]
            with ThreadPoolExecutor(len(keys)) as pool:  # at once: the engine interleaves the three models
                together = list(pool.map(lambda key: answer(url, *key), keys))
            assert together == [alone[key] for key in keys], question
        status, error = post(url, body("c", "Hi"))
        assert status == 404 and error["error"]["code"] == "model_not_found"
        assert error["error"]["message"] == (f"The model 'c' does not exist; this server serves '{EMBEDDED_NAME}', "
                                             "'a', 'b'.")


def test_each_decode_step_serves_the_sequences_of_one_adapter(adapters):
    """llama.cpp sets adapters on the whole context: a step holding two adapters' sequences would compute
    one of them with the wrong weights. Sequences of one adapter still share their steps."""
    loop = asyncio.new_event_loop()
    backend = LlamaCppBackend(Settings(lora=[f"a={adapters['a']}", f"b={adapters['b']}"], parallel=4, n_ctx=1024,
                                       flash_attn=False, cache_tokens=0))
    info = loop.run_until_complete(backend.start())
    try:
        assert info.adapters == {"a": {"temperature": 0.0}, "b": {"temperature": 0.0}}
        engine = backend.engine
        # Per step: the adapter set on the context, and the adapter of each sequence in the batch.
        steps: list[tuple[str | None, dict[int, str | None]]] = []
        decode = engine._decode

        def recording(batch):
            by_id = {s.seq_id: s.job.adapter for s in engine._running}
            ids = {batch.seq_id[i][0] for i in range(batch.n_tokens)}
            steps.append((engine._adapter.name if engine._adapter else None,
                          {i: by_id[i].name if by_id[i] else None for i in ids}))
            return decode(batch)
        engine._decode = recording

        async def generate(model: str | None, question: str) -> str:
            prompt = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
            request = GenerationRequest(prompt, SamplingParams(max_tokens=24, temperature=0), adapter=model)
            return "".join([chunk.text async for chunk in backend.generate(request)])

        # Two base sequences (batched together), one of each adapter: an adapter's sequences decoded together
        # round differently from one alone, which would make ``together == alone`` a matter of luck.
        jobs = [(None, QUESTIONS[0]), (None, QUESTIONS[1]), ("a", QUESTIONS[1]), ("b", QUESTIONS[0])]
        async def all_at_once() -> list[str]:
            return await asyncio.gather(*(generate(*job) for job in jobs))

        together = loop.run_until_complete(all_at_once())
        assert all(set(sequences.values()) == {adapter} for adapter, sequences in steps)
        assert {adapter for adapter, _ in steps} == {None, "a", "b"}
        assert any(len(sequences) == 2 for adapter, sequences in steps if adapter is None)  # still batched
        alone = [loop.run_until_complete(generate(*job)) for job in jobs]
        assert together == alone
    finally:
        loop.run_until_complete(backend.close())
        loop.close()


def test_the_embedded_models_default_adapter_is_served_first_with_its_sampling(adapters, tmp_path):
    """A packaged adapter (here --embedded-lora pointing at a placeholder: the real one ships in hammer/models/)
    is listed first, under its file's name, and gives a request without temperature its declared 0."""
    default = shutil.copy(adapters["a"], tmp_path / DEFAULT_ADAPTER_FILE)
    name = Path(DEFAULT_ADAPTER_FILE).stem
    with running_server("--embedded-lora", str(default), "--no-flash-attn", "--cache-tokens", "0") as url:
        assert [m["id"] for m in get(url, "/v1/models")["data"]] == [name, EMBEDDED_NAME]
        greedy = answer(url, name, QUESTIONS[1])
        assert [answer(url, name, QUESTIONS[1], temperature=None) for _ in range(3)] == [greedy] * 3
        assert answer(url, EMBEDDED_NAME, QUESTIONS[1]) != greedy  # the bare base stays servable


def serve_fails(*flags: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "hammer.cli", "serve", "--port", "0", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("flags", "message"), [
    (["--lora", "nonsense"], "--lora 'nonsense' is not NAME=PATH (e.g. --lora fc=adapter.gguf)"),
    (["--lora", "a=/no/such.gguf"], "--lora a=/no/such.gguf: no such file (the llama backend takes a GGUF LoRA "
                                    "adapter, e.g. from `hammer export --adapter-gguf`)"),
    (["--lora", "a=README.md"], "--lora a=README.md: not a GGUF file (convert a PEFT adapter with `hammer export "
                                "--adapter DIR --adapter-gguf ADAPTER.gguf`)"),
    (["--lora", f"{EMBEDDED_NAME}=README.md"], f"--lora '{EMBEDDED_NAME}=README.md': the model id "
                                               f"'{EMBEDDED_NAME}' is taken already (each adapter needs a name of its "
                                               "own, other than the base model's)"),
    (["--lora", "a=x.gguf", "--lora", "a=y.gguf"], "--lora 'a=y.gguf': the model id 'a' is taken already (each "
                                                   "adapter needs a name of its own, other than the base model's)"),
    (["--no-lora", "--lora", "a=x.gguf"], "--no-lora excludes --lora"),
    (["--model", "m.gguf", "--embedded-lora", "x.gguf"], "--embedded-lora applies to the embedded model of the "
                                                         "llama backend only; with --model pass --lora NAME=PATH"),
])
def test_a_bad_lora_flag_stops_the_start_naming_it(flags, message):
    assert serve_fails(*flags) == (2, f"hammer serve: {message}")


def test_a_gguf_that_is_no_adapter_of_the_model_stops_the_start():
    model = embedded_model_path()
    status, line = serve_fails("--lora", f"a={model}")
    assert status == 1
    assert line.startswith(f"hammer serve: --lora a={model}: llama.cpp could not load it as a LoRA adapter of {model}")


def peft_greedy(hf_model_dir: Path, adapter: Path | None, question: str, max_tokens: int) -> str:
    """The greedy continuation of the model's own chat prompt, by transformers and PEFT themselves."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_model_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.vllm
def test_vllm_serves_peft_adapters_beside_the_base_each_as_peft_computes_it(peft_adapters, hf_model_dir, tmp_path):
    from tests.conftest import VLLM_CPU_ARGS, require_vllm_python

    question, tokens = QUESTIONS[0], 16
    expected = {model: peft_greedy(hf_model_dir, peft_adapters.get(model), question, tokens)
                for model in (EMBEDDED_NAME, "a", "b")}
    assert len(set(expected.values())) == 3  # the adapters do change the answer
    with running_server("--backend", "vllm", "--model", str(hf_model_dir), "--served-model-name", EMBEDDED_NAME,
                        "--lora", f"a={peft_adapters['a']}", "--lora", f"b={peft_adapters['b']}", *VLLM_CPU_ARGS,
                        log_path=tmp_path / "vllm.log", python=require_vllm_python(), startup_timeout=600) as url:
        assert [m["id"] for m in get(url, "/v1/models")["data"]] == [EMBEDDED_NAME, "a", "b"]
        keys = [EMBEDDED_NAME, "a", "b"] * 2
        with ThreadPoolExecutor(len(keys)) as pool:  # batched together in the engine
            answers = list(pool.map(lambda model: json.loads(answer(url, model, question, max_tokens=tokens))[0],
                                    keys))
    assert answers == [expected[model] for model in keys]


@pytest.mark.vllm
def test_vllm_refuses_a_lora_that_is_no_peft_directory(hf_model_dir):
    from tests.conftest import require_vllm_python

    done = subprocess.run([require_vllm_python(), "-m", "hammer.cli", "serve", "--backend", "vllm", "--port", "0",
                           "--model", str(hf_model_dir), "--lora", "a=README.md"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (
        2, "hammer serve: --lora a=README.md: not a PEFT adapter directory (no adapter_config.json; the vllm backend "
           "takes the output_dir of `hammer train`)")
