"""End to end: turnspec's chat path vs the raw engine, same prompt ids, same token count, greedy, same process.

Three comparisons, each the median of several interleaved runs (A, B, A, B...):
1. llama.cpp in process: turnspec (encode + engine + stop set + streaming reader, `stream_turn`) vs
   llama-cpp-python's own `Llama.generate` loop on the same loaded-model settings: decode tokens/s and time to
   first token (TTFT).
2. The `turnspec run -p ... --json` command vs a raw llama-cpp-python script doing the same from a fresh
   process: wall time (interpreter start, model load, prompt, generation), and the run's own decode tokens/s.
3. MLX where installed (`--mlx`, on by default when mlx-lm imports): turnspec's mlx engine + reader vs mlx-lm's
   `generate_step`, on an HF folder dequantized once from the same GGUF.
Run: python -m bench.bench_e2e [--tokens 128] [--runs 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import table, write_result

SYSTEM = "You are a helpful assistant."
PROMPT = "Write a long story about a lighthouse keeper."
RAW_SCRIPT = """
import sys, time, llama_cpp
from llama_cpp import _logger
_logger.set_verbose(False)
path, text, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=threads, verbose=False)
ids = llm.tokenize(text.encode(), add_bos=False, special=True)
out = []
for t in llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0):
    out.append(t)
    if len(out) >= n:
        break
sys.stdout.write(llm.detokenize(out).decode("utf-8", "replace"))
"""


def timed(stream) -> tuple[list, float, float]:
    """(items, seconds to the last item, seconds to the first) of an iterator."""
    items, ttft, t0 = [], 0.0, time.perf_counter()
    for item in stream:
        if not items:
            ttft = time.perf_counter() - t0
        items.append(item)
    return items, time.perf_counter() - t0, ttft


def summary(runs: list[tuple[list, float, float]]) -> dict:
    return {"tokens": len(runs[0][0]),
            "decode_tok_s": statistics.median((len(ids) - 1) / (secs - ttft) for ids, secs, ttft in runs),
            "ttft_ms": statistics.median(t for _, _, t in runs) * 1000,
            "total_s": statistics.median(secs for _, secs, _ in runs)}


def in_process_llamacpp(spec, model: Path, n_tokens: int, runs: int) -> dict:
    """turnspec's chat path, turnspec's bare engine and raw llama-cpp-python, the same ids each time.

    The machine's speed drifts over a minute by more than the 3% being measured, so the three are run
    back to back in each round (order alternating) and compared round by round: the figure is the median of
    the per-round ratios, next to the medians of the absolute speeds.
    """
    import llama_cpp

    from turnspec.chat import GenerationOptions, TurnResult, stream_turn
    from turnspec.engines import load_engine
    from turnspec.engines.base import physical_cores

    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    enc = spec.encode(messages, add_generation_prompt=True, assistant_mask=False)
    engine = load_engine("llamacpp", model, n_threads=physical_cores())  # the same threads as the raw runs
    raw, control = (llama_cpp.Llama(model_path=str(model), n_ctx=engine.context_length, n_threads=physical_cores(),
                                    verbose=False) for _ in range(2))
    n = n_tokens
    finish: dict = {}

    def chat_path():
        engine.reset()  # no KV prefix reuse between runs: every run pays the whole prompt
        result = TurnResult()
        t0 = time.perf_counter()
        for _event in stream_turn(spec, engine, enc, GenerationOptions(max_tokens=n), result):
            pass
        finish.update(reason=result.finish_reason, tokens=result.completion_tokens)
        return range(result.completion_tokens), time.perf_counter() - t0, result.time_to_first_token_s

    def engine_only():
        engine.reset()
        return timed(engine.generate(enc.ids, max_tokens=finish.get("tokens", n), stop_ids=()))

    def raw_loop(llm=raw):
        llm.reset()
        count = finish.get("tokens", n)

        def stream():
            for k, token in enumerate(llm.generate(enc.ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0,
                                                   typical_p=1.0, repeat_penalty=1.0)):
                yield token
                if k + 1 >= count:
                    return

        return timed(stream())

    # "control" is a second, identical raw llama-cpp-python instance: its ratio to "raw" is the noise floor.
    paths = {"turnspec": chat_path, "engine": engine_only, "raw": raw_loop, "control": lambda: raw_loop(control)}
    samples: dict[str, list] = {name: [] for name in paths}
    try:
        chat_path()  # warm-up, and the token count every path then generates
        for k in range(runs):
            order = list(paths) if k % 2 == 0 else list(reversed(paths))
            for name in order:
                samples[name].append(paths[name]())
    finally:
        engine.close()
        raw.close()
        control.close()

    def rate(run):
        ids, secs, ttft = run
        return (len(ids) - 1) / (secs - ttft)

    ratio = statistics.median(rate(a) / rate(b) for a, b in zip(samples["turnspec"], samples["raw"]))
    engine_ratio = statistics.median(rate(a) / rate(b) for a, b in zip(samples["engine"], samples["raw"]))
    control_ratio = statistics.median(rate(a) / rate(b) for a, b in zip(samples["control"], samples["raw"]))
    ts, en, rw = summary(samples["turnspec"]), summary(samples["engine"]), summary(samples["raw"])
    return {"prompt_tokens": len(enc.ids), "turnspec": ts, "engine_only": en, "raw": rw,
            "finish_reason": finish.get("reason"), "decode_ratio": ratio, "engine_only_ratio": engine_ratio,
            "control_ratio": control_ratio,
            "ttft_ratio": ts["ttft_ms"] / rw["ttft_ms"]}


def command_llamacpp(model: Path, n_tokens: int, runs: int) -> dict:
    from turnspec.engines.base import physical_cores

    cmd = [sys.executable, "-m", "turnspec.cli", "run", "-p", PROMPT, "--system", SYSTEM, "--max-tokens",
           str(n_tokens), "--json", "--threads", str(physical_cores())]
    text = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n")
    ts_wall, raw_wall, decode = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        ts_wall.append(time.perf_counter() - t0)
        answer = json.loads(out.stdout)["data"]  # the turnspec/1 envelope
        decode.append(answer["timings"]["tokens_per_s"])
        n = answer["usage"]["completion_tokens"]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", RAW_SCRIPT, str(model), text, str(n), str(physical_cores())],
                       capture_output=True, check=True)
        raw_wall.append(time.perf_counter() - t0)
    ts, rw = statistics.median(ts_wall), statistics.median(raw_wall)
    return {"turnspec_run_wall_s": ts, "raw_script_wall_s": rw, "wall_ratio": ts / rw,
            "turnspec_run_decode_tok_s": statistics.median(decode), "tokens": n}


def in_process_mlx(spec, model: Path, n_tokens: int, runs: int) -> dict:
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    from turnspec.chat import GenerationOptions, TurnResult, stream_turn
    from turnspec.engines import load_engine
    from turnspec.engines.convert import gguf_to_hf_folder

    folder = gguf_to_hf_folder(model, Path.home() / ".cache" / "turnspec" / f"{model.stem}-hf")
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    enc = spec.encode(messages, add_generation_prompt=True, assistant_mask=False)
    engine = load_engine("mlx", folder)
    sampler = make_sampler(temp=0.0)
    ts_runs, raw_runs = [], []
    try:
        for _ in range(runs + 1):
            engine._cache, engine._cached_ids = None, []  # no prefix reuse between runs
            result = TurnResult()
            t0 = time.perf_counter()
            list(stream_turn(spec, engine, enc, GenerationOptions(max_tokens=n_tokens), result))
            ts_runs.append((range(result.completion_tokens), time.perf_counter() - t0, result.time_to_first_token_s))
            steps = generate_step(mx.array(enc.ids), engine._model, max_tokens=result.completion_tokens, sampler=sampler)
            raw_runs.append(timed(token for token, _ in steps))
    finally:
        engine.close()
    ts, rw = summary(ts_runs[1:]), summary(raw_runs[1:])

    def rate(run):
        ids, secs, ttft = run
        return (len(ids) - 1) / (secs - ttft)

    ratio = statistics.median(rate(a) / rate(b) for a, b in zip(ts_runs[1:], raw_runs[1:]))
    return {"turnspec": ts, "raw": rw, "decode_ratio": ratio, "ttft_ratio": ts["ttft_ms"] / rw["ttft_ms"],
            "tokens": n_tokens, "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="end-to-end generation benchmark")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--mlx", action=argparse.BooleanOptionalAction, default=importlib.util.find_spec("mlx_lm") is not None)
    args = parser.parse_args(argv)

    import turnspec
    from turnspec.default_model import default_model_path

    model = default_model_path()
    spec = turnspec.load(model)
    results: dict = {"model": model.name, "runs": args.runs}
    results["llamacpp_in_process"] = a = in_process_llamacpp(spec, model, args.tokens, args.runs)
    results["llamacpp_command"] = c = command_llamacpp(model, args.tokens, args.runs)
    rows = [
        ["llama.cpp, in process", f"{a['turnspec']['decode_tok_s']:.1f}", f"{a['raw']['decode_tok_s']:.1f}",
         f"{a['decode_ratio']:.3f}", f"{a['turnspec']['ttft_ms']:.0f} / {a['raw']['ttft_ms']:.0f}"],
        ["turnspec engine alone, in process", f"{a['engine_only']['decode_tok_s']:.1f}", f"{a['raw']['decode_tok_s']:.1f}",
         f"{a['engine_only_ratio']:.3f}", "-"],
        ["control: raw vs raw (noise floor)", "-", f"{a['raw']['decode_tok_s']:.1f}", f"{a['control_ratio']:.3f}", "-"],
        ["`turnspec run -p` vs raw script", f"{c['turnspec_run_decode_tok_s']:.1f}", "-",
         f"wall {c['wall_ratio']:.2f}x", f"wall {c['turnspec_run_wall_s']:.2f} s / {c['raw_script_wall_s']:.2f} s"],
    ]
    if args.mlx:
        # ~7 tok/s on a CPU: fewer, shorter runs keep this part to a few minutes
        results["mlx_in_process"] = m = in_process_mlx(spec, model, min(args.tokens, 64), min(args.runs, 5))
        rows.append(["MLX (CPU), in process", f"{m['turnspec']['decode_tok_s']:.1f}", f"{m['raw']['decode_tok_s']:.1f}",
                     f"{m['decode_ratio']:.3f}", f"{m['turnspec']['ttft_ms']:.0f} / {m['raw']['ttft_ms']:.0f}"])
    print(f"{model.name}: {a['prompt_tokens']} prompt tokens, {a['turnspec']['tokens']} generated (greedy), "
          f"{args.runs} rounds; ratios are medians of per-round ratios")
    print(table(rows, ["path", "turnspec decode tok/s", "raw decode tok/s", "turnspec/raw", "TTFT ms turnspec / raw"]))
    path = write_result("e2e", results)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
