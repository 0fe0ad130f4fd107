"""Parser tests of other projects as turnspec cases: what vLLM 0.33 and llama.cpp assert their parsers read.

`data/parser_eval/cases.jsonl` holds 860 cases extracted from vLLM's reasoning and tool parser tests and llama.cpp's
`tests/test-chat.cpp` (model outputs, the tools declared, the template the model uses, and what the source test
expects as content, reasoning and calls). Templates are llama.cpp's (`data/llamacpp_templates`, MIT) or ../shared's.
turnspec reads each output through the reader its analysis of the template builds, whole and token by token (the
SmolLM2 vocabulary with the template's control tokens as special tokens); both reads must agree.

Run as a script for the per-family table and every failure:  python tests/helpers/parser_eval.py [--family F] [-v]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
DATA = TESTS / "data"
CASES = DATA / "parser_eval" / "cases.jsonl"
KNOWN_FAILURES = DATA / "parser_eval" / "known_failures.tsv"
SHARED_TEMPLATES = TESTS.parents[1] / "shared" / "corpus" / "templates"
SMOLLM2_TOKENIZER = TESTS.parents[1] / "shared" / "models" / "smollm2-135m-instruct" / "tokenizer.json"


def load_cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]


def template_path(ref: str) -> Path:
    kind, name = ref.split("/", 1)
    folders = {"llamacpp": DATA / "llamacpp_templates", "vllm": DATA / "vllm_templates"}
    return folders.get(kind, SHARED_TEMPLATES) / name


_SPECS: dict[tuple[str, str], Any] = {}

# Special tokens of a model's real vocabulary that its template never writes, so the analysis cannot know them:
# LFM2's tokenizer marks <|tool_call_start|>/<|tool_call_end|> special (the reader never shows special tokens);
# the stand-in vocabulary must too, or they read as text. Llama 4's tokenizer has <|python_start|>/<|python_end|>
# among its special tokens, which vLLM's llama4_pythonic template never writes.
VOCAB_ONLY_SPECIAL = {
    "llamacpp/LFM2": ["<|tool_call_start|>", "<|tool_call_end|>"],
    "vllm/tool_chat_template_llama4_pythonic": ["<|python_start|>", "<|python_end|>"],
}


def spec_and_vocab(case: dict[str, Any]) -> tuple[Any, Any]:
    """The spec for the case's template, with a vocabulary that has the template's control tokens as special tokens."""
    import turnspec
    from tokenizers import AddedToken, Tokenizer

    special = case.get("special_tokens") or {}
    key = (case["template"], json.dumps(special, sort_keys=True))
    if key not in _SPECS:
        text = template_path(case["template"]).read_text(encoding="utf-8")
        bare = turnspec.from_template(text, special_tokens=special)
        tok = Tokenizer.from_file(str(SMOLLM2_TOKENIZER))
        tokens = list(bare.analysis.control_tokens) + [v for v in special.values() if v]
        tokens += next((t for prefix, t in VOCAB_ONLY_SPECIAL.items() if case["template"].startswith(prefix)), [])
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(tokens)])
        _SPECS[key] = (turnspec.from_template(text, special_tokens=special, tokenizer=tok), tok)
    return _SPECS[key]


def read_case(case: dict[str, Any]) -> dict[str, Any]:
    """{"whole": (content, reasoning, calls), "tokens": (...), "error": str | None} for one case."""
    spec, tok = spec_and_vocab(case)
    tools = case.get("tools") or None
    try:
        prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tools=tools,
                             **(case.get("render_kwargs") or {}))
    except Exception:  # noqa: BLE001 - a template that refuses these tools still has its output read
        prompt = ""
    try:
        whole = spec.reader(prompt, tools=tools).read_all(case["output"])
        reader = spec.reader(prompt, tools=tools)
        for tid in tok.encode(case["output"], add_special_tokens=False).ids:
            reader.feed_token(tid)
            if reader.done:
                break
        reader.finish()
    except Exception as exc:  # noqa: BLE001 - reported as the case's failure
        return {"whole": None, "tokens": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"whole": _parts(whole), "tokens": _parts(reader.result), "error": None}


def _parts(result: Any) -> tuple[str, str, list[tuple[str, Any]]]:
    calls = []
    for c in result.tool_calls:
        args = c.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
        calls.append((c.name, _numbers(args)))
    return result.content, result.reasoning, calls


def _numbers(v: Any) -> Any:
    """1 == 1.0, nested."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return int(v) if math.isfinite(v) and v == int(v) else float(v)
    if isinstance(v, list):
        return [_numbers(x) for x in v]
    if isinstance(v, dict):
        return {k: _numbers(x) for k, x in v.items()}
    return v


def mismatches(case: dict[str, Any], got: tuple[str, str, list[tuple[str, Any]]]) -> list[str]:
    """What differs from what the source test asserts (narrowed by the case's `checks`)."""
    content, reasoning, calls = got
    want, checks = case["expect"], case.get("checks") or {}
    unchecked = set(checks.get("unchecked", []))
    bad = []
    if "content" not in unchecked and content.strip() != want["content"].strip():
        bad.append("content")
    bad += [f"content lacks {s!r}" for s in checks.get("content_contains", []) if s.strip() not in content]
    bad += [f"content has {s!r}" for s in checks.get("content_not_contains", []) if s in content]
    if "reasoning" not in unchecked and reasoning.strip() != want["reasoning"].strip():
        bad.append("reasoning")
    if "tool_calls" in unchecked:
        if checks.get("min_calls") and len(calls) < checks["min_calls"]:
            bad.append("no call")
        return bad
    if len(calls) != len(want["tool_calls"]):
        return bad + [f"{len(calls)} calls, want {len(want['tool_calls'])}"]
    for i, (w, (name, args)) in enumerate(zip(want["tool_calls"], calls)):
        if f"call{i}.name" not in unchecked and w["name"] != name:
            bad.append(f"call{i} name")
        if f"call{i}.args" in unchecked:
            continue
        expected = _numbers(w["arguments"])
        if f"call{i}.args_subset" in unchecked:
            if not isinstance(args, dict) or any(args.get(k, object()) != v for k, v in expected.items()):
                bad.append(f"call{i} args")
        elif args != expected:
            bad.append(f"call{i} args")
    return bad


def verdict(case: dict[str, Any]) -> tuple[bool, str]:
    """(passed, why not): both reads must agree and match the source test."""
    read = read_case(case)
    if read["error"]:
        return False, "error: " + " ".join(read["error"].split())[:120]
    if read["whole"] != read["tokens"]:
        return False, "token-by-token read differs from the whole-text read"
    bad = mismatches(case, read["whole"])
    return not bad, ",".join(bad)


def known_failures() -> dict[str, str]:
    out = {}
    for line in KNOWN_FAILURES.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            case_id, _, why = line.partition("\t")
            out[case_id] = why
    return out


def main(argv: list[str]) -> None:
    family = argv[argv.index("--family") + 1] if "--family" in argv else None
    cases = [c for c in load_cases() if family is None or c["family"] == family]
    results = {c["id"]: verdict(c) for c in cases}
    by_family: dict[str, list[bool]] = {}
    for c in cases:
        by_family.setdefault(c["family"], []).append(results[c["id"]][0])
    for fam, oks in sorted(by_family.items()):
        print(f"{fam:24} {sum(oks):4d}/{len(oks):<4d} {100 * sum(oks) / len(oks):5.1f}%")
    passed = sum(ok for ok, _ in results.values())
    print(f"{'TOTAL':24} {passed:4d}/{len(cases):<4d} {100 * passed / max(1, len(cases)):5.1f}%")
    if "-v" in argv:
        for case_id, (ok, why) in results.items():
            if not ok:
                print(f"  {case_id}: {why}")
    if "--write-known" in argv:
        lines = ["# case id<TAB>what differs (tests/helpers/parser_eval.py --write-known regenerates this list)"]
        lines += [f"{case_id}\t{why}" for case_id, (ok, why) in results.items() if not ok]
        KNOWN_FAILURES.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))  # run as a script: `helpers` and turnspec importable
    main(sys.argv[1:])
