"""What serving LoRA adapters side by side costs the llama.cpp engine (``--lora``): requests/s with every
request on one adapter against requests alternating between two, at several ``adapter_quantum`` values
(how many steps one adapter's sequences may take in a row while the other's wait), with the bare base
as the reference.

llama.cpp sets adapters on the whole context, so a decode step serves one adapter's sequences; each switch
makes the next ``llama_decode`` reserve its compute graph again. Runs the engine in-process on the
embedded SmolLM2-135M with two random adapters of ``--rank`` on every linear layer (what ``hammer train``
adapts), generating exactly ``--max-tokens`` per request (end-of-generation tokens are biased out), so every
configuration does the same work.

    python benchmarks/lora_scheduling.py
    python benchmarks/lora_scheduling.py --requests 32 --parallel 8 --quanta 1 4 8 32
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

LINEAR = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.", "Explain photosynthesis briefly.",
             "List three prime numbers.", "Who wrote Hamlet?", "Describe a cat in one sentence.",
             "What is 12 times 7?", "Name a famous painter."]


def random_adapter(model_path: Path, output: Path, rank: int, seed: int) -> Path:
    """A GGUF LoRA adapter with random A and B for every linear layer of the model (speed does not
    depend on the values, only on the shapes)."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(model_path)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(output), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(2 * rank))
    for tensor in reader.tensors:
        if tensor.name.split(".")[-2] in LINEAR:
            n_in, n_out = (int(d) for d in tensor.shape[:2])  # GGUF order: innermost (input) first
            writer.add_tensor(f"{tensor.name}.lora_a", (rng.standard_normal((rank, n_in)) * 0.01).astype(np.float16))
            writer.add_tensor(f"{tensor.name}.lora_b", (rng.standard_normal((n_out, rank)) * 0.01).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return output


def tokenize(vocab, text: str) -> list[int]:
    import llama_cpp

    data = text.encode()
    buffer = (llama_cpp.llama_token * (len(data) + 8))()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buffer, len(buffer), True, True)
    return list(buffer[:n])


def run(model, adapters: list, args: argparse.Namespace, quantum: int) -> tuple[float, int]:
    """Seconds for ``args.requests`` requests, each on ``adapters[i % len]`` (None: the base), all submitted at
    once; and how many times the engine switched adapters."""
    import llama_cpp
    from hammer.server.backends.base import SamplingParams
    from hammer.server.backends.llamacpp_engine import BatchEngine, EngineConfig, Job
    from hammer.server.backends.llamacpp_sampler import SequenceSampler

    engine = BatchEngine(model, EngineConfig(n_ctx=512, parallel=args.parallel, batch_tokens=512, cache_tokens=0,
                                             threads=args.threads, flash_attn=True, adapter_quantum=quantum))
    switches = 0
    set_adapter = engine._set_adapter

    def counting(adapter) -> None:
        nonlocal switches
        switches += 1
        set_adapter(adapter)
    engine._set_adapter = counting  # type: ignore[method-assign]
    vocab = llama_cpp.llama_model_get_vocab(model)
    ends = tuple((t, float("-inf")) for t in range(engine.vocab.size) if engine.vocab.is_end(t))
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0, logit_bias=ends)
    done = threading.Semaphore(0)

    def emit(item) -> None:
        if isinstance(item, BaseException) or item.finish_reason is not None:
            done.release()
    jobs = [Job(tokenize(vocab, f"<|im_start|>user\n{QUESTIONS[i % len(QUESTIONS)]}<|im_end|>\n"
                                "<|im_start|>assistant\n"), params, SequenceSampler(engine.vocab, params, None), emit,
                adapter=adapters[i % len(adapters)]) for i in range(args.requests)]
    started = time.perf_counter()
    for job in jobs:
        engine.submit(job)
    for _ in jobs:
        done.acquire()
    elapsed = time.perf_counter() - started
    engine.close()
    return elapsed, switches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="llama.cpp threads (default: half the cores, as the server)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (the median is shown)")
    parser.add_argument("--quanta", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    import llama_cpp
    from hammer.server.backends.llamacpp_engine import Adapter
    from hammer.server.settings import embedded_model_path

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's log: errors only, as the server
    path = embedded_model_path()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    with tempfile.TemporaryDirectory() as folder:
        a, b = (Adapter(name, llama_cpp.llama_adapter_lora_init(model, str(random_adapter(
            path, Path(folder) / f"{name}.gguf", args.rank, seed)).encode()), -1 - seed)
            for seed, name in enumerate("ab"))
    configurations = [("base only", [None], args.quanta[0]), ("one adapter", [a], args.quanta[0])]
    configurations += [(f"two adapters alternating, quantum {q}", [a, b], q) for q in args.quanta]
    print(f"{args.requests} requests x {args.max_tokens} tokens, --parallel {args.parallel}, {args.threads} threads, "
          f"adapters of rank {args.rank} on every linear layer; median of {args.repeat}")
    print(f"{'configuration':42} {'requests/s':>10} {'tokens/s':>9} {'switches':>9}")
    for label, adapters, quantum in configurations:
        runs = [run(model, adapters, args, quantum) for _ in range(args.repeat)]
        seconds = statistics.median(r[0] for r in runs)
        print(f"{label:42} {args.requests / seconds:10.2f} {args.requests * args.max_tokens / seconds:9.1f} "
              f"{runs[0][1]:9d}")
    llama_cpp.llama_model_free(model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
