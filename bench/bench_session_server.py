"""serve with kept sessions: prompt tokens the engine evaluates per turn of a 20-turn agent conversation, against
the same server rendering every request whole (`--max-sessions 0`; the engine still reuses the common KV prefix).

The default model (SmolLM2-135M GGUF, llama.cpp, greedy) with the Qwen3 template from ../shared (same ChatML
tokens; it drops past reasoning and re-serializes tool calls when it re-renders history). The client is a replay:
the same scripted user messages and tool results, and each answer sent back as an OpenAI client does (content,
tool calls with JSON-string arguments, no reasoning). Even turns force a tool call (`tool_choice: required`), odd
turns answer in text. Evaluated = usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens.

llama-server (bench-only, as in bench/bench_batch.py: --llama-server PATH, $LLAMA_SERVER, PATH, or
--build-llama-server from the llama-cpp-python sdist) gets the same scripted client with the same GGUF and template,
set up as a single user would: `--jinja --chat-template-file <Qwen3> --parallel 1 --cache-reuse 256 -c 8192`
(one slot, so the conversation keeps its slot; prompt caching is llama-server's default). Its evaluated count is
its own `timings.prompt_n`. Each server answers with its own greedy samples, so the conversations are the same
script but not the same text. Every replay starts a fresh server; figures are per-turn medians of --runs replays.

Run: python -m bench.bench_session_server [--runs 3] [--llama-server PATH | --build-llama-server]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import SHARED, table, write_result

TURNS = 20
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Cairo", "Quito", "Hanoi", "Perth", "Dakar"]


def _post(port: int, body: dict[str, Any]) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data}")
    return data


def _replay(port: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a weather assistant."},
                                      {"role": "user", "content": f"What is the weather in {CITIES[0]}?"}]
    rows = []
    for turn in range(TURNS):
        forced = turn % 2 == 0
        body = {"model": "m", "messages": messages, "tools": TOOLS, "temperature": 0, "max_tokens": 40,
                **({"tool_choice": "required"} if forced else {})}
        t0 = time.perf_counter()
        reply = _post(port, body)
        elapsed = time.perf_counter() - t0
        usage = reply["usage"]
        timings = reply.get("timings")  # llama-server's own count of the prompt tokens it evaluated
        if timings is not None:
            evaluated = timings["prompt_n"]
        else:
            evaluated = usage["prompt_tokens"] - (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        rows.append({"turn": turn, "ends_with": messages[-1]["role"], "prompt": usage["prompt_tokens"],
                     "cached": usage["prompt_tokens"] - evaluated, "evaluated": evaluated, "s": elapsed})
        msg = reply["choices"][0]["message"]
        messages.append({"role": "assistant", "content": msg.get("content"),
                         **({"tool_calls": msg["tool_calls"]} if msg.get("tool_calls") else {})})
        if msg.get("tool_calls"):
            for call in msg["tool_calls"]:
                messages.append({"role": "tool", "tool_call_id": call["id"],
                                 "content": json.dumps({"temp_c": 10 + turn, "sky": "clear"})})
        else:
            messages.append({"role": "user", "content": f"And in {CITIES[(turn // 2 + 1) % len(CITIES)]}?"})
    return rows


def _serve(app: Any) -> tuple[Any, int, threading.Thread]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, sock.getsockname()[1], thread


def _llama_server(binary: Path, gguf: Path, template: Path) -> Any:
    from bench.bench_batch import Server, free_port

    port = free_port()
    return Server("llama-server", [str(binary), "-m", str(gguf), "--port", str(port), "--jinja",
                                   "--chat-template-file", str(template), "--parallel", "1", "--cache-reuse", "256",
                                   "-c", "8192", "-t", "2", "--no-webui"], port)


def _turnspec_replay(spec: Any, gguf: Path, max_sessions: int) -> list[dict[str, Any]]:
    from turnspec.engines import load_engine
    from turnspec.server import create_app

    engine = load_engine("llamacpp", gguf, n_ctx=8192)
    server, port, thread = _serve(create_app(spec, engine, max_sessions=max_sessions))
    try:
        return _replay(port)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.close()


def _median_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-turn medians over replays (the counts are the same on every replay when decoding is deterministic)."""
    return [{"turn": rows[0]["turn"], "ends_with": rows[0]["ends_with"],
             **{k: statistics.median(r[k] for r in rows) for k in ("prompt", "cached", "evaluated", "s")}}
            for rows in zip(*runs)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import turnspec
    from bench.bench_batch import build_llama_server, find_llama_server
    from turnspec.default_model import default_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="replays per server (fresh server each)")
    parser.add_argument("--llama-server", default=None, help="a llama-server binary (default: $LLAMA_SERVER, PATH)")
    parser.add_argument("--build-llama-server", action="store_true", help="build it from the sdist when not found")
    args = parser.parse_args(argv)

    gguf = default_model_path()
    template = SHARED / "corpus" / "templates" / "Qwen-Qwen3-0.6B.jinja"
    spec = turnspec.load(gguf, template=template)
    binary, anchor_note = find_llama_server(args.llama_server), "found"
    if binary is None and args.build_llama_server:
        binary, _, anchor_note = build_llama_server(Path(tempfile.mkdtemp(prefix="llama-server-")))
    elif binary is None:
        anchor_note = "llama-server not found (pass --llama-server or --build-llama-server)"
    runs: dict[str, list[list[dict[str, Any]]]] = {"sessions": [], "whole render": []}
    if binary is not None:
        runs["llama-server"] = []
    for run in range(args.runs):
        runs["sessions"].append(_turnspec_replay(spec, gguf, 128))
        runs["whole render"].append(_turnspec_replay(spec, gguf, 0))
        if binary is not None:
            server = _llama_server(binary, gguf, template)
            try:
                runs["llama-server"].append(_replay(server.port))
            finally:
                server.stop()
        print(f"replay {run + 1}: evaluated per turn", {k: [r["evaluated"] for r in v[-1]] for k, v in runs.items()},
              flush=True)
    results = {label: _median_rows(rs) for label, rs in runs.items()}
    labels = list(results)
    rows = [[t, results["sessions"][t]["ends_with"]]
            + [v for label in labels for v in (results[label][t]["prompt"], results[label][t]["evaluated"])]
            for t in range(TURNS)]
    header = ["turn", "ends with (turnspec)"] + [f"{c} ({label})" for label in labels for c in ("prompt", "eval")]
    print(table(rows, header))
    later = slice(1, None)  # the first turn has nothing to reuse
    summary = {label: {"evaluated_total": sum(r["evaluated"] for r in rs[later]),
                       "evaluated_median": statistics.median(r["evaluated"] for r in rs[later]),
                       "evaluated_first": rs[0]["evaluated"], "prompt_last": rs[-1]["prompt"],
                       "seconds_total": sum(r["s"] for r in rs)}
               for label, rs in results.items()}
    print(json.dumps(summary, indent=2))
    path = write_result("session_server", {
        "turns": TURNS, "runs": args.runs, "llama_server": str(binary) if binary is not None else None,
        "llama_server_note": anchor_note, "per_turn": results, "per_run": runs, "summary": summary})
    print(f"written to {path}")
    return summary


if __name__ == "__main__":
    main()
