"""``hammer export``: merge a LoRA adapter into its base and write a quantized GGUF, or write the adapter
alone as a GGUF LoRA adapter (``--adapter-gguf``) for ``hammer serve --lora``."""

from __future__ import annotations

import argparse
import sys

HELP = "Merge a trained LoRA adapter and write a quantized GGUF for `hammer serve --model` (or the adapter alone)."

# BFCL runs Hammer models near-greedy; an adapter declares it so a client that sends no temperature gets it.
DEFAULT_ADAPTER_TEMPERATURE = 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hammer.training.quantize import QUANTIZATIONS

    parser.add_argument("--adapter", required=True, metavar="DIR", help="LoRA adapter directory from `hammer train`")
    parser.add_argument("--base", metavar="BASE",
                        help="base model (HF dir, hub id, .gguf, or 'embedded'); default: the one it was trained on")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", metavar="MODEL.gguf", help="the quantized GGUF to write (merged model)")
    target.add_argument("--adapter-gguf", metavar="ADAPTER.gguf",
                        help="write the adapter alone as a llama.cpp GGUF LoRA adapter (F16, not merged), "
                             "for `hammer serve --lora NAME=ADAPTER.gguf`")
    parser.add_argument("--merged-dir", metavar="DIR",
                        help="where to keep the merged HF model (default: OUTPUT's name with -hf)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="Q4_K_M",
                        help="llama.cpp quantization type (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_ADAPTER_TEMPERATURE,
                        help="--adapter-gguf: the temperature the adapter recommends to requests that give none "
                             "(default: %(default)s, greedy, as BFCL runs Hammer)")
    parser.add_argument("--top-p", type=float, help="--adapter-gguf: the top_p it recommends (default: none)")


def run(args: argparse.Namespace) -> int:
    from hammer.training.gguf_convert import ConversionError

    try:
        if args.adapter_gguf:
            return _adapter_gguf(args)
        return _merged(args)
    except (OSError, ValueError, ConversionError, RuntimeError) as exc:
        print(f"hammer export: {exc}", file=sys.stderr)
        return 2


def _merged(args: argparse.Namespace) -> int:
    from hammer.training.export import export
    from hammer.training.quantize import quantization_mix

    path = export(args.adapter, args.output, args.base, args.merged_dir, args.quantization)
    print(f"wrote {path}: {quantization_mix(path, args.quantization)}")
    print(f"serve it with: hammer serve --model {path}")
    return 0


def _adapter_gguf(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hammer.training.export import export_adapter_gguf

    sampling = {"temperature": args.temperature}
    if args.top_p is not None:
        sampling["top_p"] = args.top_p
    path = export_adapter_gguf(args.adapter, args.adapter_gguf, args.base, sampling)
    declared = ", ".join(f"{k} {v:g}" for k, v in sampling.items())
    print(f"wrote {path}: LoRA adapter, {path.stat().st_size / 2**20:.1f} MiB, recommends {declared}")
    print(f"serve it with: hammer serve --lora {Path(path).stem}={path}")
    return 0
