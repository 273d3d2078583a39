"""Training-module benchmarks: data pipeline throughput and LoRA training tokens/s.

    python benchmarks/training_bench.py                 # both
    python benchmarks/training_bench.py --skip-train    # data pipeline only

Data: 60k synthetic xLAM-shaped examples (JSON Lines on disk) through `hammer.training.build.build`
(load, +10% irrelevance, 33% masking, render, write). Training: a few LoRA steps on the
embedded SmolLM2-135M with the bundled sample data; tokens/s counts prompt + completion tokens.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hammer.training.build import build
from hammer.training.synthetic import synthetic_examples

SAMPLE = Path(__file__).resolve().parents[1] / "training" / "data" / "xlam_sample.json"


def bench_data(n: int, workdir: Path) -> None:
    source = workdir / "synthetic.jsonl"
    with source.open("w", encoding="utf-8") as f:
        for example in synthetic_examples(n, seed=0, as_json_strings=True):
            f.write(json.dumps(example) + "\n")
    start = time.perf_counter()
    report = build(source, workdir / "train.jsonl", masking_ratio=0.33, irrelevance_ratio=0.10, seed=0)
    seconds = time.perf_counter() - start
    print(f"data pipeline: {n} examples -> {report.total} rows in {seconds:.1f} s "
          f"({report.total / seconds:,.0f} rows/s, load + augment + mask + render + write)")


def bench_train(steps: int, max_length: int, workdir: Path) -> None:
    from hammer.training.config import TrainConfig
    from hammer.training.train import build_trainer

    build(SAMPLE, workdir / "sample.jsonl", seed=0)
    config = TrainConfig(base_model="embedded", train_file=str(workdir / "sample.jsonl"),
                         output_dir=str(workdir / "run"), max_steps=steps, per_device_train_batch_size=1,
                         gradient_accumulation_steps=1, warmup_ratio=0.0, max_length=max_length,
                         save_steps=10_000, logging_steps=1)
    trainer = build_trainer(config)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = int(max(entry.get("num_tokens", 0) for entry in trainer.state.log_history))  # TRL's running count
    print(f"training (LoRA r={config.lora_rank}, SmolLM2-135M, fp32, CPU): {steps} steps, {tokens} tokens in "
          f"{seconds:.1f} s = {tokens / seconds:,.0f} tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_data(args.examples, Path(tmp))
        if not args.skip_train:
            bench_train(args.steps, args.max_length, Path(tmp))


if __name__ == "__main__":
    main()
