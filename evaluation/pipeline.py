"""The whole evaluation: load entries, run each endpoint (plain and masked), write results and report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hammer.evaluation.client import Endpoint, EndpointError, check_url
from hammer.evaluation.entries import Entry
from hammer.evaluation.runner import RunOptions


@dataclass(frozen=True)
class EvalConfig:
    endpoints: list[Endpoint]
    categories: list[str]
    datasets: dict[str, str]
    limit: int | None
    first: bool  # --limit takes the first entries instead of a spread-out sample
    mask_names: bool
    output: Path
    options: RunOptions
    command: str = field(default="hammer eval")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalConfig:
        from hammer.evaluation.bfcl_data import DEFAULT_CATEGORIES

        datasets = {}
        for item in args.dataset:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"--dataset expects NAME=PATH, got {item!r}")
            datasets[name] = path
        if args.categories is None:
            categories = [] if datasets else list(DEFAULT_CATEGORIES)
        elif args.categories.strip().lower() == "none":
            categories = []
        else:
            categories = [c.strip() for c in args.categories.split(",") if c.strip()]
        if not categories and not datasets:
            raise ValueError("nothing to evaluate: give --categories or --dataset")
        for flag, value, low in (("--workers", args.workers, 1), ("--limit", args.limit, 1),
                                 ("--retries", args.retries, 0), ("--max-tokens", args.max_tokens, 1)):
            if value is not None and value < low:
                raise ValueError(f"{flag} must be at least {low}, got {value}")
        if not args.timeout > 0:
            raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
        check_url(args.base_url, "--base-url")
        endpoints = [Endpoint(args.label, args.base_url, args.model or "", args.api_key)]
        if args.compare:
            check_url(args.compare, "--compare")
            endpoints.append(Endpoint(args.compare_label, args.compare, args.compare_model or "", args.compare_api_key))
        if len({e.label for e in endpoints}) != len(endpoints):
            raise ValueError("--label and --compare-label must differ")
        options = RunOptions(workers=args.workers, timeout_s=args.timeout, retries=args.retries,
                             max_tokens=args.max_tokens, seed=args.seed)
        if args.first and args.limit is None:
            raise ValueError("--first needs --limit")
        return cls(endpoints, categories, datasets, args.limit, args.first, args.mask_names, Path(args.output),
                   options, "hammer eval " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["eval"] else sys.argv[1:]))


def load_entries(config: EvalConfig) -> list[Entry]:
    from hammer.evaluation.bfcl_data import load_categories
    from hammer.evaluation.local_data import load_local

    seed, first = config.options.seed, config.first
    entries = load_categories(config.categories, config.limit, seed=seed, first=first)
    for name, path in config.datasets.items():
        entries += load_local(name, path, config.limit, seed=seed, first=first)
    return entries


def _sample_name(config: EvalConfig) -> str:
    if config.limit is None:
        return "all entries"
    if config.first:
        return f"the first {config.limit} entries of each category"
    return f"{config.limit} entries spread over each category (seed {config.options.seed})"


def resolve_model(endpoint: Endpoint, timeout_s: float, flags: tuple[str, str] = ("--base-url", "--api-key")
                  ) -> Endpoint:
    """Check that the endpoint answers (``GET /v1/models``), and fill in the model name from it when none
    was given; ``EndpointError`` names the URL and the flag to check (``flags``: its URL and key flags)."""
    import openai
    from hammer.evaluation.client import _message, api_base, connection_problem, make_client

    url_flag, key_flag = flags
    url = api_base(endpoint.base_url)
    try:
        first = next(iter(make_client(endpoint, timeout_s).models.list()), None)
    except openai.APIConnectionError as exc:  # refused, unknown host, timeout
        raise EndpointError(f"cannot reach {url} ({connection_problem(exc, timeout_s)}): is `hammer serve` "
                            f"running there? check {url_flag}") from None
    except openai.APIStatusError as exc:
        if endpoint.model and exc.status_code in (404, 405):
            return endpoint  # answers, but lists no models: the chat requests will tell
        hint = f"check {key_flag}" if exc.status_code in (401, 403) else \
            f"is {url} an OpenAI-compatible endpoint? check {url_flag}"
        raise EndpointError(f"GET {url}/models answered HTTP {exc.status_code}: {_message(exc)} ({hint})") from None
    except openai.OpenAIError as exc:  # an answer that is not an OpenAI model list
        raise EndpointError(f"{url} did not answer like an OpenAI-compatible endpoint ({exc}); "
                            f"check {url_flag}") from None
    if endpoint.model:
        return endpoint
    if first is None:
        raise EndpointError(f"{url} lists no models (pass the model name with --model)")
    return Endpoint(endpoint.label, endpoint.base_url, first.id, endpoint.api_key)


def evaluate(config: EvalConfig) -> Path:
    """Run everything; returns the report's path (``results.json`` lies beside it)."""
    from hammer.evaluation.report import write_report
    from hammer.evaluation.runner import run_entries
    from hammer.evaluation.summary import summarize

    entries = load_entries(config)
    # Every endpoint answers, before the first one's run (a dead --compare found after an hour helps no one).
    flags = [("--base-url", "--api-key"), ("--compare", "--compare-api-key")]
    endpoints = [resolve_model(endpoint, config.options.timeout_s, flags[min(i, 1)])
                 for i, endpoint in enumerate(config.endpoints)]
    config.output.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    # Every record is also appended here as it lands, so an interrupted run keeps what it measured.
    with (config.output / "records.partial.jsonl").open("w", encoding="utf-8") as partial:
        def keep(record: dict[str, Any], label: str) -> None:
            partial.write(json.dumps({"label": label, **record}, default=str) + "\n")
            partial.flush()

        for endpoint in endpoints:
            for masked in (False, True) if config.mask_names else (False,):
                records = run_entries(endpoint, entries, masked, config.options,
                                      lambda record, label=endpoint.label: keep(record, label))
                runs.append({"label": endpoint.label, "base_url": endpoint.base_url, "model": endpoint.model,
                             "masked": masked, "summary": summarize(records), "records": records})
    settings = {"command": config.command, "categories": config.categories, "datasets": config.datasets,
                "limit": config.limit, "sample": _sample_name(config), "seed": config.options.seed,
                "timeout_s": config.options.timeout_s, "max_tokens": config.options.max_tokens,
                "workers": config.options.workers}
    with (config.output / "results.json").open("w", encoding="utf-8") as f:
        json.dump({"config": settings, "runs": runs}, f, indent=1, default=str)
    (config.output / "records.partial.jsonl").unlink()
    return write_report(config.output, runs, settings)
