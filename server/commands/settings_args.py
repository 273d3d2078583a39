"""Command-line flags generated from ``Settings``, so flags and env vars cannot drift apart."""

from __future__ import annotations

import argparse
from typing import Any

from hammer.server.errors import in_our_words
from hammer.server.settings import Settings
from pydantic import ValidationError


# `hammer serve --help` by topic: every setting in one section (tests/test_cli.py checks it).
SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("model", "backend", "served_model_name", "prompt_format", "n_ctx", "lora", "no_lora", "embedded_lora"),
    "HTTP and access": ("host", "port", "api_key", "api_key_file", "metrics_public", "metrics_port", "log_level"),
    "request limits": ("max_queue", "max_messages", "max_body_bytes", "request_timeout", "shutdown_timeout",
                       "max_tool_calls", "max_tools"),
    "constrained decoding (tool and response_format schemas)": (
        "max_string_length", "max_schema_depth", "max_array_items", "max_pattern_repetition", "max_enum_values",
        "max_grammar_bytes"),
    "agent behaviour": ("loop_guard", "dedupe_calls", "refusal", "refusal_message"),
    "Responses API store": ("responses_store_size", "responses_store_ttl", "responses_store_chars"),
    "llama.cpp backend": ("n_threads", "n_gpu_layers", "flash_attn", "parallel", "batch_tokens", "cache_tokens",
                          "cache_dir", "cache_per_key"),
    "vLLM backend": ("tensor_parallel_size", "gpu_memory_utilization", "dtype", "quantization", "max_num_seqs",
                     "enable_prefix_caching", "enforce_eager"),
}
# Offered on the command line; tests and embedders may pass another backend (e.g. "fake") in Settings.
CLI_BACKENDS = ("llama", "vllm")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, grouped by topic; a boolean is a switch pair (``--enforce-eager`` /
    ``--no-enforce-eager``), as vLLM and llama.cpp write theirs."""
    for title, names in SECTIONS.items():
        group = parser.add_argument_group(title)
        for name in names:
            _add_setting(group, name)


def _add_setting(group: argparse._ArgumentGroup, name: str) -> None:
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    flag = f"--{name.replace('_', '-')}"
    said = "default" in (field.description or "")  # the description states its default in words
    help = f"{field.description} (env HAMMER_{name.upper()}{'' if said else f'; default: {default!r}'})"
    if name == "backend":
        group.add_argument(flag, dest=name, default=argparse.SUPPRESS, type=_backend, help=help,
                           metavar="{" + ",".join(CLI_BACKENDS) + "}")
    elif field.annotation is bool and name.startswith("no_"):  # --no-lora: a plain switch, not --no-no-lora
        group.add_argument(flag, dest=name, default=argparse.SUPPRESS, action="store_true", help=help)
    elif (field.json_schema_extra or {}).get("repeatable"):  # type: ignore[union-attr]  # --lora A=x --lora B=y
        group.add_argument(flag, dest=name, default=argparse.SUPPRESS, action="append", metavar=name.upper(),
                           help=help)
    elif field.annotation in (bool, bool | None):  # None: unset, the backend picks for the platform
        group.add_argument(flag, dest=name, default=argparse.SUPPRESS, action=argparse.BooleanOptionalAction,
                           help=help)
    else:
        group.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=name.upper(), help=help)


def _backend(name: str) -> str:
    if name not in CLI_BACKENDS:
        raise argparse.ArgumentTypeError(f"unknown backend {name!r}; choose one of {', '.join(CLI_BACKENDS)}")
    return name


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags override environment variables, which override defaults."""
    given: dict[str, Any] = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = [f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {in_our_words(e)}" for e in exc.errors()]
        raise SystemExit("hammer: invalid settings:\n  " + "\n  ".join(lines)) from None
