"""serve with kept sessions: prompt tokens the engine evaluates per turn of a 20-turn agent conversation, against
the same server rendering every request whole (`--max-sessions 0`; the engine still reuses the common KV prefix).

The default model (SmolLM2-135M GGUF, llama.cpp, greedy) with the Qwen3 template from ../shared (same ChatML
tokens; it drops past reasoning and re-serializes tool calls when it re-renders history). The client is a replay:
the same scripted user messages and tool results, and each answer sent back as an OpenAI client does (content,
tool calls with JSON-string arguments, no reasoning). Even turns force a tool call (`tool_choice: required`), odd
turns answer in text. Evaluated = usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens.

llama-server on the same replay is not measured here (not built in this run).

Run: python -m bench.bench_session_server
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
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
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        rows.append({"turn": turn, "prompt": usage["prompt_tokens"], "cached": cached,
                     "evaluated": usage["prompt_tokens"] - cached, "s": elapsed})
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


def main() -> dict[str, Any]:
    import turnspec
    from turnspec.default_model import default_model_path
    from turnspec.engines import load_engine
    from turnspec.server import create_app

    gguf = default_model_path()
    spec = turnspec.load(gguf, template=SHARED / "corpus" / "templates" / "Qwen-Qwen3-0.6B.jinja")
    results: dict[str, Any] = {}
    for label, max_sessions in (("sessions", 128), ("whole render", 0)):
        engine = load_engine("llamacpp", gguf, n_ctx=8192)
        server, port, thread = _serve(create_app(spec, engine, max_sessions=max_sessions))
        try:
            results[label] = _replay(port)
        finally:
            server.should_exit = True
            thread.join(10)
            engine.close()
    a, b = results["sessions"], results["whole render"]
    rows = [[r["turn"], r["prompt"], r["evaluated"], s["prompt"], s["evaluated"]] for r, s in zip(a, b)]
    print(table(rows, ["turn", "prompt (sessions)", "evaluated", "prompt (whole)", "evaluated"]))
    later = slice(1, None)  # the first turn has nothing to reuse
    summary = {label: {"evaluated_total": sum(r["evaluated"] for r in rs[later]),
                       "evaluated_median": statistics.median(r["evaluated"] for r in rs[later]),
                       "prompt_last": rs[-1]["prompt"], "seconds_total": sum(r["s"] for r in rs)}
               for label, rs in results.items()}
    print(json.dumps(summary, indent=2))
    path = write_result("session_server", {"turns": TURNS, "per_turn": results, "summary": summary})
    print(f"written to {path}")
    return summary


if __name__ == "__main__":
    main()
