"""The Hammer paper's ablation at this project's scale: base vs LoRA without masking vs LoRA with the recipe.

    python benchmarks/hammer_ablation.py                  # everything, resuming what is done
    python benchmarks/hammer_ablation.py --table-only     # the table from finished evaluations

For each trained arm: ``hammer data build`` from BFCL's unscored categories (held out from the
test, overlap dropped; the same source examples for both arms), ``hammer train`` (LoRA, the
config's settings), ``hammer export`` to a GGUF. Then every arm, the base included (the embedded
SmolLM2-135M GGUF), is served with ``hammer serve --model`` and measured with ``hammer eval`` on
the same spread sample of BFCL's test categories, with real and with masked names. Prints one
table (arms x categories x names/masked names) and writes it to ``OUTPUT/table.md``.

Arms:
- ``no-masking``: the data as is (masking ratio 0, irrelevance ratio 0);
- ``recipe``: function masking on 33% of rows and 10% irrelevance examples (the paper's best).

Every step writes its result under ``--output`` and is skipped when that result exists, so an
interrupted run picks up where it stopped (``hammer train`` itself resumes from checkpoints).
Logs: ``OUTPUT/<step>.log``; wall times: ``OUTPUT/times.json``. Needs the ``llama``, ``train``
and ``eval`` extras and ``bfcl-eval`` (see docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hammer.processes import free_port, running

# Every unscored category with answers; live_irrelevance is left out so that the only refusals
# either arm sees are the recipe's irrelevance augmentation, as in the paper's ablation.
SOURCE = ("bfcl-offline:live_simple,live_multiple,live_parallel,live_parallel_multiple,"
          "exec_simple,exec_multiple,exec_parallel,exec_parallel_multiple,rest,sql")
ARMS: dict[str, dict[str, float]] = {
    "no-masking": {"masking_ratio": 0.0, "irrelevance_ratio": 0.0},
    "recipe": {"masking_ratio": 0.33, "irrelevance_ratio": 0.10},
}
# The targets (simple, multiple, irrelevance) first: they are evaluated in this order.
CATEGORIES = ("simple_python", "multiple", "irrelevance", "parallel", "parallel_multiple")
SHORT = {"simple_python": "simple", "parallel_multiple": "par. mult."}


def step(output: Path, name: str, cmd: list[str], done: Path) -> None:
    """Run ``cmd`` (logged to ``OUTPUT/name.log``) unless ``done`` exists; record its wall time."""
    if done.exists():
        print(f"[skip] {name}: {done} exists", flush=True)
        return
    print(f"[run]  {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with (output / f"{name}.log").open("a", encoding="utf-8") as log:
        code = subprocess.run(cmd, check=False, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if code != 0:
        raise SystemExit(f"{name} failed with exit status {code}; see {output / f'{name}.log'}")
    record_time(output, name, time.perf_counter() - start)


def record_time(output: Path, name: str, seconds: float) -> None:
    path = output / "times.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    # A resumed step adds to the time it had already spent.
    times[name] = round(times.get(name, 0) + seconds, 1)
    path.write_text(json.dumps(times, indent=1) + "\n")


def arm_config(base_config: Path, output: Path, arm: str) -> Path:
    """The base config with this arm's data and run directory."""
    import yaml

    config = yaml.safe_load(base_config.read_text())
    config.update(train_file=str(output / f"{arm}.train.jsonl"), output_dir=str(output / arm))
    path = output / f"{arm}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def evaluate(output: Path, arm: str, gguf: Path | None, args: argparse.Namespace) -> None:
    """Serve ``gguf`` (the embedded model for ``None``) and run ``hammer eval`` on it, one category
    at a time (so a run cut short leaves whole categories, names and masked names, to resume from)."""
    pending = [c for c in CATEGORIES if not (eval_dir(output, arm, args.limit) / c / "results.json").exists()]
    if not pending:
        print(f"[skip] eval-{arm}: every category has results", flush=True)
        return
    port = free_port()
    serve = [sys.executable, "-m", "hammer.cli", "serve", "--port", str(port), "--n-threads", str(args.threads),
             "--served-model-name", arm, *(["--model", str(gguf)] if gguf else [])]
    with running(serve, f"http://127.0.0.1:{port}/v1/models", output / f"serve-{arm}.log"):
        for category in pending:
            evaluate_cmd = [sys.executable, "-m", "hammer.cli", "eval", "--base-url", f"http://127.0.0.1:{port}",
                            "--label", arm, "--categories", category, "--limit", str(args.limit),
                            "--seed", str(args.seed), "--mask-names", "--workers", str(args.workers),
                            "--max-tokens", str(args.max_tokens), "--timeout", str(args.timeout),
                            "--output", str(eval_dir(output, arm, args.limit) / category)]
            print(f"[run]  eval-{arm}-{category}: {' '.join(serve)}; {' '.join(evaluate_cmd)}", flush=True)
            start = time.perf_counter()
            with (output / f"eval-{arm}.log").open("a", encoding="utf-8") as log:
                code = subprocess.run(evaluate_cmd, check=False, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
            if code != 0:
                raise SystemExit(f"eval-{arm}-{category} failed with exit status {code}; see {output / f'eval-{arm}.log'}")
            record_time(output, f"eval-{arm}-{category}", time.perf_counter() - start)


def eval_dir(output: Path, arm: str, limit: int) -> Path:
    return output / f"eval-{arm}-limit{limit}"


def accuracies(directory: Path) -> dict[bool, dict[str, tuple[int, int]]]:
    """``{masked: {category: (passed, n)}}`` from an arm's per-category evaluations: results.json
    where the run finished, else the records written so far (a run cut short; n says how many)."""
    table: dict[bool, dict[str, tuple[int, int]]] = {False: {}, True: {}}
    for category in CATEGORIES:
        results, partial = directory / category / "results.json", directory / category / "records.partial.jsonl"
        if results.exists():
            records = [r for run in json.loads(results.read_text())["runs"]
                       for r in ({**x, "masked": run["masked"]} for x in run["records"])]
        elif partial.exists():
            records = [json.loads(line) for line in partial.open(encoding="utf-8") if line.strip()]
        else:
            continue
        for masked in (False, True):
            done = [r for r in records if bool(r.get("masked")) == masked]
            if done:
                table[masked][category] = (sum(r["verdict"]["passed"] for r in done), len(done))
    return table


def table(output: Path, arms: list[str], limit: int) -> str:
    """Markdown: one row per arm and name mode, one column per category plus the unweighted mean
    (BFCL's), in %; a category with fewer than ``limit`` entries done shows its n."""
    columns = [*CATEGORIES, "mean"]
    header = "| arm | names | " + " | ".join(SHORT.get(c, c) for c in columns) + " |"
    lines = [header, "|" + " --- |" * (len(columns) + 2)]
    for arm in arms:
        for masked, row in accuracies(eval_dir(output, arm, limit)).items():
            if not row:
                continue
            cells = []
            for category in CATEGORIES:
                passed, n = row.get(category, (0, 0))
                cells.append("" if not n else f"{100 * passed / n:.0f}" + ("" if n >= limit else f" (n={n})"))
            mean = sum(p / n for p, n in row.values()) / len(row)
            cells.append(f"{100 * mean:.1f}")
            lines.append(f"| {arm} | {'masked' if masked else 'real'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def data_sizes(output: Path, arms: list[str]) -> dict[str, Any]:
    sizes = {}
    for arm in arms:
        path = output / f"{arm}.train.jsonl"
        if path.exists():
            rows = [json.loads(line) for line in path.open(encoding="utf-8")]
            sizes[arm] = {"rows": len(rows), "irrelevant": sum(r["irrelevant"] for r in rows),
                          "masked": sum(r["masked"] for r in rows)}
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "ablation", help="run directory")
    parser.add_argument("--config", type=Path, default=ROOT / "training" / "configs" / "bfcl-smollm2-cpu.yaml",
                        help="training config of both arms (train_file and output_dir are set per arm)")
    parser.add_argument("--examples", type=int, default=60,
                        help="source examples per arm, the same for both (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=50, help="test entries per category, spread (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data and evaluation sample seed (default: 0)")
    parser.add_argument("--quantization", default="Q8_0", help="GGUF type of the exports (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="concurrent eval requests (default: %(default)s)")
    # The longest gold answer (4 parallel calls) is about 150 tokens; an untrained model that rambles
    # to hammer eval's default of 512 costs minutes per request on a CPU and is wrong either way.
    parser.add_argument("--max-tokens", type=int, default=256, help="max_tokens of each eval request (default: %(default)s)")
    # A shared CPU can hold a request for minutes; a timeout would count as the model's failure.
    parser.add_argument("--timeout", type=float, default=900, help="seconds per eval request (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="llama.cpp threads of each server (default: half the cores)")
    parser.add_argument("--arms", default="base,no-masking,recipe",
                        help="arms to run and tabulate, in order (run two invocations with different arms "
                             "and the same --output to overlap them)")
    parser.add_argument("--table-only", action="store_true", help="only print the table of finished evaluations")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on kill, not only Ctrl-C
    output = args.output
    output.mkdir(parents=True, exist_ok=True)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a != "base" and a not in ARMS]
    if unknown:
        parser.error(f"unknown arm {unknown[0]!r}; choose from base, {', '.join(ARMS)}")
    hammer = [sys.executable, "-m", "hammer.cli"]
    if not args.table_only:
        for arm in arms:  # each arm evaluated as soon as it is trained: partial results come early
            if arm == "base":
                evaluate(output, arm, None, args)
                continue
            ratios = ARMS[arm]
            data = output / f"{arm}.train.jsonl"
            step(output, f"data-{arm}", [*hammer, "data", "build", "--input", SOURCE, "--output", str(data),
                                         "--max-examples", str(args.examples), "--seed", str(args.seed),
                                         "--masking-ratio", str(ratios["masking_ratio"]),
                                         "--irrelevance-ratio", str(ratios["irrelevance_ratio"])], data)
            step(output, f"train-{arm}", [*hammer, "train", "--config", str(arm_config(args.config, output, arm))],
                 output / arm / "adapter_model.safetensors")
            gguf = output / f"{arm}-{args.quantization}.gguf"
            step(output, f"export-{arm}", [*hammer, "export", "--adapter", str(output / arm), "--output", str(gguf),
                                           "--quantization", args.quantization], gguf)
            evaluate(output, arm, gguf, args)
    text = table(output, arms, args.limit)
    sizes = data_sizes(output, arms)
    times_path = output / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    summary = (f"{text}\n\nBFCL spread sample: {args.limit} per category (seed {args.seed}); accuracy in %, "
               f"BFCL's checker.\ntraining rows: {json.dumps(sizes)}\nwall times (s): {json.dumps(times)}\n")
    (output / "table.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
