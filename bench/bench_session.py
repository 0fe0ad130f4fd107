"""Session `extend` cost against a full re-render, at 10, 50 and 200 turns of an agent conversation.

A turn is one sampled assistant completion (a tool call with reasoning, or an answer) and the message that follows
it (a tool result, or a user message). `extend` renders a short window of the history and tokenizes only what is
new; the reference re-renders and re-tokenizes the whole conversation with transformers' `apply_chat_template`
(what a runner without sessions does every turn). Qwen3 template and tokenizer (../shared/models/qwen3-tokenizer).

Run: python -m bench.bench_session
"""

from __future__ import annotations

import statistics
import sys
import time

from bench.common import REPO, SHARED, table, write_result

sys.path.insert(0, str(REPO / "tests"))

TURNS = (10, 50, 200)
SAMPLES = 40  # extend calls timed per run (each on a fresh copy of the same session)
RUNS = 7  # medians of the runs' p50 and p99
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _turn(k: int) -> tuple[str, dict]:
    """The k-th sampled completion text and the message that follows it."""
    if k % 2 == 0:
        text = (f'<think>\nStep {k}: I should look it up.\n</think>\n\n<tool_call>\n{{"name": "get_weather", '
                f'"arguments": {{"city": "City {k}"}}}}\n</tool_call><|im_end|>')
        return text, {"role": "tool", "content": f'{{"temp_c": {k % 30}, "sky": "clear"}}'}
    return f"<think>\nDone {k}.\n</think>\n\nIt is {k % 30} °C in City {k - 1}.<|im_end|>", \
        {"role": "user", "content": f"And in city {k + 1}?"}


def _session(spec, turns: int):
    s = spec.session(tools=[WEATHER])
    s.prompt_ids([{"role": "user", "content": "What is the weather in City 0?"}])
    pending = None
    for k in range(turns):
        if pending is not None:
            s.extend([pending])
        text, pending = _turn(k)
        s.add_completion(spec.vocab.encode(text))
    return s, pending


def _clone(s):
    return s.fork()


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def main() -> dict:
    import transformers

    import turnspec

    folder = SHARED / "models" / "qwen3-tokenizer"
    spec = turnspec.load(folder)
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    sessions = {}
    for turns in TURNS:
        base, new = _session(spec, turns)
        _clone(base).extend([new])  # warm-up: the window check runs once per kind of message
        sessions[turns] = (base, new, [*base.messages, new])
    runs: dict[int, tuple[list, list]] = {t: ([], []) for t in TURNS}
    for _ in range(RUNS):  # sizes interleaved, so that load from other processes hits them alike
        for turns, (base, new, messages) in sessions.items():
            ext = []
            for _ in range(SAMPLES):
                c = _clone(base)
                t0 = time.perf_counter()
                c.extend([new])
                ext.append(time.perf_counter() - t0)
            ref = []
            for _ in range(max(5, SAMPLES // 4)):
                t0 = time.perf_counter()
                hf.apply_chat_template(messages, tools=[WEATHER], add_generation_prompt=True, tokenize=True)
                ref.append(time.perf_counter() - t0)
            runs[turns][0].append(_percentiles(ext))
            runs[turns][1].append(_percentiles(ref))
    rows, results = [], {}
    for turns, (runs_ext, runs_ref) in runs.items():
        base = sessions[turns][0]
        e50, e99 = (statistics.median(r[i] for r in runs_ext) * 1000 for i in (0, 1))
        r50, r99 = (statistics.median(r[i] for r in runs_ref) * 1000 for i in (0, 1))
        results[str(turns)] = {"ids": len(base.ids), "extend_p50_ms": e50, "extend_p99_ms": e99,
                               "rerender_p50_ms": r50, "rerender_p99_ms": r99, "speedup_p50": r50 / e50}
        rows.append([turns, len(base.ids), f"{e50:.3f}", f"{e99:.3f}", f"{r50:.2f}", f"{r99:.2f}", f"{r50 / e50:.0f}x"])
    print(table(rows, ["turns", "ids", "extend p50 ms", "p99 ms", "re-render p50 ms", "p99 ms", "ratio p50"]))
    path = write_result("session", {"turns": results, "samples": SAMPLES, "runs": RUNS})
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
