"""``hammer export``: merge a LoRA adapter into its base and write a quantized GGUF."""

from __future__ import annotations

import argparse
import sys

HELP = "Merge a trained LoRA adapter and write a quantized GGUF for `hammer serve --model`."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hammer.training.quantize import QUANTIZATIONS

    parser.add_argument("--adapter", required=True, metavar="DIR", help="LoRA adapter directory from `hammer train`")
    parser.add_argument("--base", metavar="BASE",
                        help="base model (HF dir, hub id, .gguf, or 'embedded'); default: the one it was trained on")
    parser.add_argument("--output", required=True, metavar="MODEL.gguf", help="the quantized GGUF to write")
    parser.add_argument("--merged-dir", metavar="DIR",
                        help="where to keep the merged HF model (default: OUTPUT's name with -hf)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="Q4_K_M",
                        help="llama.cpp quantization type (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from hammer.training.export import export
    from hammer.training.gguf_convert import ConversionError
    from hammer.training.quantize import quantization_mix

    try:
        path = export(args.adapter, args.output, args.base, args.merged_dir, args.quantization)
    except (OSError, ValueError, ConversionError, RuntimeError) as exc:
        print(f"hammer export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {quantization_mix(path, args.quantization)}")
    print(f"serve it with: hammer serve --model {path}")
    return 0
