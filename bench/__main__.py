"""Run every benchmark, then print one table of the headline figures against their targets.

    python -m bench                 # everything (about 30 minutes on 2 cores)
    python -m bench --quick         # fewer runs, 1,000-conversation mask and encode sets
    python -m bench --only render,startup

Each benchmark writes bench/results/<name>.json; this writes bench/results/summary.json and summary.md (the table
the README's Performance section shows). Every comparison is measured in the same run, as a median of several.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.common import RESULTS, machine, table, write_result

ALL = ("render", "startup", "reader", "analysis", "mask", "encode", "e2e", "batch")


def run(name: str, quick: bool) -> None:
    print(f"\n=== {name} ===", flush=True)
    if name == "render":
        from bench import bench_render

        bench_render.main()
    elif name == "startup":
        from bench import bench_startup

        bench_startup.main()
    elif name == "reader":
        from bench import bench_reader

        bench_reader.main(["--runs", "3" if quick else "5"])
    elif name == "analysis":
        from bench import bench_analysis

        bench_analysis.main(["--runs", "2" if quick else "5"])
    elif name == "mask":
        from bench import bench_mask

        bench_mask.main(["--n", "1000" if quick else "10000", "--repeats", "1" if quick else "3"])
    elif name == "encode":
        from bench import bench_encode

        bench_encode.main(["--n", "1000" if quick else "3000", "--repeats", "3" if quick else "5",
                           "--file-n", "5000" if quick else "20000"])
    elif name == "e2e":
        from bench import bench_e2e

        bench_e2e.main(["--runs", "3" if quick else "9"])
    elif name == "batch":  # llama-server as the anchor when $LLAMA_SERVER or PATH has one
        from bench import bench_batch

        bench_batch.main(["--runs", "1" if quick else "5"])


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def headline() -> list[list[str]]:
    """[figure, result, target, met?] rows from whatever result files exist."""
    rows: list[list[str]] = []

    def add(figure: str, value: str, target: str = "-", met: bool | None = None) -> None:
        rows.append([figure, value, target, "-" if met is None else ("yes" if met else "NO")])

    if r := load("render"):
        n = sum(1 for k in r["templates"] if "+" not in k)  # template rows; "smollm2 render+tokenize" is extra
        add(f"render vs transformers apply_chat_template (median of {n} templates)",
            f"{r['median_render_speedup']:.2f}x (min {r['min_render_speedup']:.2f}x)", ">= 2x",
            r["median_render_speedup"] >= 2)
        add("render + tokenize vs transformers (SmolLM2)", f"{r['templates']['smollm2 render+tokenize']['speedup']:.2f}x")
    if r := load("mask"):
        tagged = r["synthetic_chatml_generation"]
        add(f"assistant mask, {{% generation %}} template, {r['conversations']} chats", f"{tagged['tag_speedup']:.2f}x transformers")
        add("assistant mask, universal method on the same template", f"{tagged['universal_speedup']:.2f}x transformers")
        add("universal mask on SmolLM2 (transformers: no mask)",
            f"{r['smollm2']['turnspec_universal_us']:.0f} µs/chat ({r['smollm2']['ratio_vs_plain_encode']:.2f}x a plain encode)")
    if r := load("encode"):
        add("training data: turnspec encode vs transformers (tagged template), per core",
            f"{r['speedup_per_core']:.2f}x ({r['turnspec_conv_per_s']:,.0f} vs {r['transformers_conv_per_s']:,.0f} chats/s; "
            f"tokenizer alone {r['tokenizer_alone_conv_per_s']:,.0f})", ">= 1.5x", r["speedup_per_core"] >= 1.5)
        for procs, eff in r["scaling_efficiency"].items():
            if procs != "1":
                add(f"turnspec encode, {procs} processes vs 1 ({r.get('file_rows', '?')} rows)",
                    f"{r['encode_file_conv_per_s'][procs]:,.0f} chats/s, {eff:.0%} of linear", "linear")
    if r := load("startup"):
        s = r["seconds"]
        add("import turnspec", f"{s['import turnspec'] * 1000:.0f} ms", "< 100 ms", s["import turnspec"] < 0.1)
        add("turnspec --help", f"{s['turnspec --help'] * 1000:.0f} ms")
        add("import transformers (reference)", f"{s['import transformers'] * 1000:.0f} ms")
    if r := load("reader"):
        worst = max(r["formats"], key=lambda f: f["us_per_token"])
        frac = max((f["fraction_of_decode_step"] or 0) for f in r["formats"])
        best = min(r["formats"], key=lambda f: f["us_per_token"])
        add(f"streaming reader, {len(r['formats'])} syntaxes learned from real templates",
            f"{best['us_per_token']:.1f}–{worst['us_per_token']:.1f} µs/token (worst: {worst['format']})")
        add("reader cost per SmolLM2 llama.cpp decode step", f"{100 * frac:.3f}%", "< 1%", frac < 0.01)
    if r := load("analysis"):
        a = r["summary"]
        add(f"template analysis, once per model ({a['templates']} templates)",
            f"median {a['median_warm_ms']:.0f} ms (max {a['max_warm_ms']:.0f} ms; {a['median_cold_ms']:.0f} ms cold)")
    if r := load("e2e"):
        a = r["llamacpp_in_process"]
        if "engine_only_ratio" in a:
            add("decode tok/s, turnspec's engine alone vs raw llama-cpp-python",
                f"{a['engine_only']['decode_tok_s']:.1f} vs {a['raw']['decode_tok_s']:.1f} ({a['engine_only_ratio']:.3f})")
        add("decode tok/s, turnspec chat path vs raw llama-cpp-python",
            f"{a['turnspec']['decode_tok_s']:.1f} vs {a['raw']['decode_tok_s']:.1f} ({a['decode_ratio']:.3f})",
            ">= 0.97", a["decode_ratio"] >= 0.97)
        if "control_ratio" in a:
            add("control: a second raw llama-cpp-python vs the first (noise floor)", f"{a['control_ratio']:.3f}")
        add("time to first token, turnspec vs raw", f"{a['turnspec']['ttft_ms']:.0f} ms vs {a['raw']['ttft_ms']:.0f} ms")
        c = r["llamacpp_command"]
        add("`turnspec run -p` wall time vs a raw llama-cpp-python script",
            f"{c['turnspec_run_wall_s']:.2f} s vs {c['raw_script_wall_s']:.2f} s")
        if m := r.get("mlx_in_process"):
            add("MLX (CPU) decode tok/s, turnspec vs raw mlx-lm",
                f"{m['turnspec']['decode_tok_s']:.1f} vs {m['raw']['decode_tok_s']:.1f} ({m['decode_ratio']:.3f})",
                ">= 0.97", m["decode_ratio"] >= 0.97)
    if r := load("batch"):
        streams = r["streams"]
        threads = f", {r['threads']} thread{'s' if r.get('threads', 1) > 1 else ''} per server" if r.get("threads") else ""
        for n, row in streams.items():
            anchor = (f"; {row['batched_vs_llama_server']:.2f}x llama-server ({row['llama-server']:.0f})"
                      if "batched_vs_llama_server" in row else "")
            target, met = (">= 2x", row["batched_vs_serialized"] >= 2) if n == "4" else ("-", None)
            add(f"serve, {n} concurrent stream{'s' if n != '1' else ''}: aggregate tok/s, --parallel 4 vs "
                f"--parallel 1{threads}",
                f"{row['batched']:.0f} vs {row['serialized']:.0f} ({row['batched_vs_serialized']:.2f}x){anchor}",
                target, met)
        if agree := streams.get("4", {}).get("agreement"):
            same = agree["same"]
            add("same greedy requests, turnspec vs llama-server: identical answers",
                f"content {same['content']}/{agree['requests']}, reasoning {same['reasoning']}/{agree['requests']}")
        if c := r.get("constrained"):
            ratio = c["ratio_vs_unconstrained"]
            add("constrained decode tok/s vs unconstrained (llama.cpp grammar, one stream)",
                f"JSON schema {ratio['json_schema']:.2f}x, forced call {ratio['forced_call']:.2f}x")
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| figure | result | target | met |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\nMachine: {machine()}.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller mask set")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--summary-only", action="store_true", help="print the table from existing results")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(ALL)}")
    if not args.summary_only:
        for name in names:
            run(name, args.quick)
    rows = headline()
    print(f"\n=== summary ({machine()}) ===")
    print(table(rows, ["figure", "result", "target", "met"]))
    write_result("summary", {"rows": [dict(zip(["figure", "result", "target", "met"], r)) for r in rows]})
    (RESULTS / "summary.md").write_text(markdown(rows), encoding="utf-8")
    print(f"wrote {RESULTS / 'summary.json'} and {RESULTS / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
