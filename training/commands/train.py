"""``hammer train --config CONFIG.yaml``: LoRA supervised fine-tuning."""

from __future__ import annotations

import argparse
import sys

HELP = "Fine-tune a base model with LoRA on `hammer data build` output (config: YAML)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="CONFIG.yaml",
                        help="training settings; see training/configs/ and docs/training.md")


def run(args: argparse.Namespace) -> int:
    import logging

    from hammer.training.config import ConfigError, load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hammer train: {exc}", file=sys.stderr)
        return 2
    from hammer.training.train import train

    try:
        out = train(config)
    except (OSError, ValueError) as exc:
        print(f"hammer train: {exc}", file=sys.stderr)
        return 2
    print(f"saved the LoRA adapter in {out}; next: hammer export --adapter {out} --output model-Q4_K_M.gguf")
    return 0
