"""Benchmark: how long the template analysis takes, per template, cold and warm.

    python bench/bench_analysis.py [--runs 5]

For every template in ../shared/corpus (and the model folders), `turnspec.analysis.analyze` runs on a fresh spec:
"cold" is the first analysis in the process (the template is parsed and compiled then), "warm" the median of the
following runs (the compiled template is cached, as it is for every spec of the same model). "second load" is
`spec.analysis` on a fresh spec of the same template once one spec has read it: the analysis is cached across
loads by the template's hash and tokens (turnspec.analysis.cache), so this is the cache lookup (median of the runs;
goal < 1 ms). Writes bench/results/analysis.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import turnspec  # noqa: E402
from turnspec.analysis import analyze  # noqa: E402
from turnspec.analysis.cache import clear as clear_analysis_cache  # noqa: E402

from bench.common import SHARED, table, write_result  # noqa: E402


def templates() -> list[tuple[str, str, dict[str, str]]]:
    from helpers.corpus_models import special_tokens_for, template_files, template_id

    out = []
    for path in template_files():
        if path.name == "chat_template.jinja":
            continue
        out.append((template_id(path), path.read_text(encoding="utf-8"), special_tokens_for(path)))
    return out


def second_loads(new_spec: Callable[[], Any], runs: int) -> float:
    """Median ms of `spec.analysis` on fresh specs of one model after a first spec filled the cache (the vocabulary
    is loaded outside the timing, as for the warm runs)."""
    clear_analysis_cache()
    new_spec().analysis
    times = []
    for _ in range(runs):
        spec = new_spec()
        spec.control_tokens()
        t0 = time.perf_counter()
        spec.analysis
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    if not (SHARED / "corpus").exists():
        print("../shared/corpus is absent: the benchmark needs the shared data folder", file=sys.stderr)
        return 2
    rows = []
    for name, source, special in templates():
        times = []
        for _ in range(1 + args.runs):
            spec = turnspec.from_template(source, special_tokens=special)
            t0 = time.perf_counter()
            analysis = analyze(spec)
            times.append((time.perf_counter() - t0) * 1000)
        second = second_loads(lambda: turnspec.from_template(source, special_tokens=special), args.runs)
        rows.append({"template": name, "cold_ms": times[0], "warm_ms": statistics.median(times[1:]),
                     "second_load_ms": second,
                     "readable_calls": bool(analysis.tools.calls), "reasoning": analysis.reasoning.kind,
                     "error": analysis.error})
    for folder in ("smollm2-135m-instruct", "gpt-oss-tokenizer"):
        path = SHARED / "models" / folder
        times = []
        for _ in range(1 + args.runs):
            spec = turnspec.load(path)
            spec.control_tokens()  # the vocabulary is loaded outside the timing: rendering never needs it
            t0 = time.perf_counter()
            analysis = analyze(spec)
            times.append((time.perf_counter() - t0) * 1000)
        second = second_loads(lambda: turnspec.load(path), args.runs)
        rows.append({"template": folder, "cold_ms": times[0], "warm_ms": statistics.median(times[1:]),
                     "second_load_ms": second,
                     "readable_calls": bool(analysis.tools.calls), "reasoning": analysis.reasoning.kind,
                     "error": analysis.error})
    rows.sort(key=lambda r: r["warm_ms"])
    print(table([[r["template"], f"{r['cold_ms']:.0f}", f"{r['warm_ms']:.1f}", f"{r['second_load_ms']:.3f}",
                  "yes" if r["readable_calls"] else "no", r["reasoning"]] for r in rows],
                ["template", "cold ms", "warm ms", "second load ms", "calls read", "reasoning"]))
    warm = [r["warm_ms"] for r in rows]
    second = [r["second_load_ms"] for r in rows]
    summary = {"templates": len(rows), "median_warm_ms": statistics.median(warm), "max_warm_ms": max(warm),
               "median_cold_ms": statistics.median(r["cold_ms"] for r in rows),
               "median_second_load_ms": statistics.median(second), "max_second_load_ms": max(second)}
    print(f"analysis per template: median {summary['median_warm_ms']:.1f} ms warm "
          f"(max {summary['max_warm_ms']:.1f} ms), {summary['median_cold_ms']:.0f} ms cold; second load "
          f"median {summary['median_second_load_ms']:.3f} ms (max {summary['max_second_load_ms']:.3f} ms)")
    path = write_result("analysis", {"runs": args.runs, "summary": summary, "templates": rows})
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
