"""``hammer eval``: BFCL function-calling accuracy of an OpenAI-compatible endpoint (or two, side by side)."""

from __future__ import annotations

import argparse
import sys

HELP = "Measure function-calling quality of an OpenAI-compatible endpoint with BFCL's data and AST rules."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hammer.evaluation.bfcl_data import CATEGORY_SCORING, DEFAULT_CATEGORIES

    parser.add_argument("--base-url", required=True, help="endpoint, e.g. http://127.0.0.1:8000 (with or without /v1)")
    parser.add_argument("--api-key", default="EMPTY", help="bearer token for --base-url")
    parser.add_argument("--model", help="model name to request (default: the first of the endpoint's /v1/models)")
    parser.add_argument("--label", default="target", help="name of this endpoint in the report (default: %(default)s)")
    parser.add_argument("--categories", default=None,
                        help=f"comma-separated BFCL categories (default: {','.join(DEFAULT_CATEGORIES)}; "
                             f"'none' with --dataset only); available: {','.join(CATEGORY_SCORING)}")
    parser.add_argument("--limit", type=int, default=None,
                        help="N entries of each category and data set, spread over it (one from each N-th; "
                             "seeded by --seed); default: all")
    parser.add_argument("--first", action="store_true",
                        help="with --limit: the first N entries instead (BFCL's first entries are its easiest)")
    parser.add_argument("--workers", type=int, default=1, help="concurrent requests per endpoint (default: 1)")
    parser.add_argument("--output", required=True, metavar="DIR", help="directory for results.json and report.md")
    parser.add_argument("--mask-names", action="store_true",
                        help="also run every entry with random function and parameter names, and report the drop")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the --limit sample and of --mask-names (default: 0)")
    parser.add_argument("--compare", metavar="URL2", help="a second endpoint to run the same entries against")
    parser.add_argument("--compare-model", metavar="NAME2", help="model name for --compare (default: its first model)")
    parser.add_argument("--compare-api-key", default="EMPTY", help="bearer token for --compare")
    parser.add_argument("--compare-label", default="compare", help="name of --compare in the report")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH",
                        help="a local data set (API-Bank, ToolAlpaca, NexusRaven, Seal-Tools, ...) in xLAM layout, "
                             "scored by F1; repeatable (see docs/evaluation.md)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per request; a request past it is an error (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=2, help="retries of transient errors (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=512, help="max_tokens of each request (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        from openai import OpenAIError
    except ImportError:
        print("hammer eval: the openai package is not installed (pip install 'hammer-server[eval]')", file=sys.stderr)
        return 2

    from hammer.evaluation.client import EndpointError
    from hammer.evaluation.pipeline import EvalConfig, evaluate

    try:
        config = EvalConfig.from_args(args)
        report = evaluate(config)
    except EndpointError as exc:  # names the URL and what to check
        print(f"hammer eval: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError, KeyError, OpenAIError) as exc:
        print(f"hammer eval: {_one_line(exc)}", file=sys.stderr)
        return 2
    print(report.read_text())
    print(f"\nwrote {report} and {report.parent / 'results.json'}", file=sys.stderr)
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) or not text:  # KeyError('x') prints as 'x': say what it is
        return f"{type(exc).__name__}: {text}"
    if isinstance(exc, OSError) and exc.filename and exc.strerror:  # "[Errno 2] ..." → the path and the reason
        return f"{exc.filename}: {exc.strerror}"
    return text
