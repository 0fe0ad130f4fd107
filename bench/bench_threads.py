"""Decode threads on a shared machine: tok/s of raw llama.cpp (SmolLM2 Q4_1, greedy) for each thread count, on an
idle machine and with 1..N other busy processes, next to the count turnspec's default picks in each case.

llama.cpp splits each operation over its threads and waits for the slowest at every step, so a thread that shares
its core with another process holds the others back. The default (`engines.base.default_threads`) counts the cores
other work keeps busy when the engine loads and leaves them alone.
Run: python -m bench.bench_threads [--tokens 48] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from bench.common import table, write_result

BURN = "while True: pass"


def gguf_path() -> str:
    from turnspec.default_model import default_model_path

    return str(default_model_path())


def rate(llm, tokens: int, runs: int) -> float:
    samples = []
    for _ in range(runs):
        llm.reset()
        t0 = time.perf_counter()
        out = llm("The capital of France is", max_tokens=tokens, temperature=0)
        samples.append(out["usage"]["completion_tokens"] / (time.perf_counter() - t0))
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict:
    from llama_cpp import Llama

    from turnspec.engines.base import default_threads, physical_cores

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    cores = physical_cores()
    model = gguf_path()
    rows, results = [], []
    for burners in range(cores):
        procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(burners)]
        try:
            time.sleep(0.5)
            picked = default_threads()
            rates = {}
            for threads in range(1, cores + 1):
                llm = Llama(model, n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False)
                rates[threads] = rate(llm, args.tokens, args.runs)
                del llm
        finally:
            for p in procs:
                p.kill()
        best = max(rates.values())
        results.append({"other_busy_processes": burners, "tok_s_by_threads": rates, "default_threads": picked,
                        "default_vs_best": rates[picked] / best})
        rows.append([burners, *(f"{rates[t]:.1f}" for t in range(1, cores + 1)), picked, f"{rates[picked] / best:.2f}"])
    print(table(rows, ["busy", *(f"{t} thr tok/s" for t in range(1, cores + 1)), "default", "default/best"]))
    data = {"tokens": args.tokens, "runs": args.runs, "physical_cores": cores, "results": results}
    write_result("threads", data)
    return data


if __name__ == "__main__":
    main()
