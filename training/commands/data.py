"""``hammer data build``: xLAM data → Hammer training rows (JSON Lines, prompt–completion)."""

from __future__ import annotations

import argparse
import sys

HELP = "Prepare training data: irrelevance augmentation, function masking, Hammer prompts."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hammer.training.build import DEFAULT_IRRELEVANCE_RATIO, DEFAULT_MASKING_RATIO, ON_ERROR

    from hammer.prompt_format import PROMPT_FORMATS

    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build a training set from xLAM-format data",
                               description="Build Hammer training rows from xLAM-function-calling-60k-format data.")
    build.add_argument("--input", required=True, metavar="SOURCE",
                       help="xLAM data: a .json/.jsonl file, a Hugging Face dataset name "
                            "(e.g. Salesforce/xlam-function-calling-60k; needs network and `datasets`), or "
                            "bfcl-offline[:CATEGORY,...]: BFCL's unscored categories from the installed bfcl-eval "
                            "(live_*, exec_*, rest, sql), rows overlapping BFCL's test dropped")
    build.add_argument("--max-examples", type=int, metavar="N",
                       help="use N source examples drawn at random (same seed and N: the same ones), "
                            "before augmentation (default: all)")
    build.add_argument("--output", required=True, metavar="TRAIN.jsonl", help="where to write the rows")
    build.add_argument("--masking-ratio", type=float, default=DEFAULT_MASKING_RATIO,
                       help="share of rows with function masking (default: %(default)s; 0.67 = released code)")
    build.add_argument("--irrelevance-ratio", type=float, default=DEFAULT_IRRELEVANCE_RATIO,
                       help="share of rows that are irrelevance examples answering [] (default: %(default)s)")
    build.add_argument("--seed", type=int, default=0, help="random seed; same seed, same output (default: 0)")
    build.add_argument("--prompt-format", choices=PROMPT_FORMATS, default="hammer-2.1",
                       help="prompt layout, as `hammer serve --prompt-format` (default: %(default)s)")
    build.add_argument("--on-error", choices=ON_ERROR, default="stop",
                       help="a bad input row (missing field, malformed JSON, a call to an unlisted tool): "
                            "stop = exit 2 naming the row and field, writing nothing; skip = leave it out "
                            "and report it (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import json

    from hammer.training.build import build

    try:
        report = build(args.input, args.output, args.masking_ratio, args.irrelevance_ratio, args.seed,
                       args.prompt_format, args.on_error, args.max_examples)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        print(f"hammer data build: {exc}", file=sys.stderr)
        return 2
    if report.source_note:
        print(f"hammer data build: {report.source_note}")
    if report.skipped:
        print(f"hammer data build: {report.skipped_summary()}", file=sys.stderr)
    print(f"wrote {args.output}: {report}")
    return 0
