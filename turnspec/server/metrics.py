"""`GET /metrics` in Prometheus' text format (0.0.4), written by hand: no client library needed for a few counters.

Counted in two places only: requests (endpoint, method, status) by one ASGI middleware, outermost, so refusals
by the request guard count too; tokens and timings from every finished generation, through the worker's
`listeners` (whatever API the request came from). Queue depth, active generations, slots and model swaps are read
from the worker and the model manager when scraped. /metrics is open like /health (probes and scrapers carry no
key; it shows counts, never request contents).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any, Awaitable, Callable, Iterable

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.routing import Match

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DECODE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
UNMATCHED = "unmatched"  # any path no route serves: one label, so scanners cannot grow the label set


class Histogram:
    def __init__(self, buckets: Iterable[float]):
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = next((k for k, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts):
            running += count
            out.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
        return out + [f"{name}_sum {_number(self.sum)}", f"{name}_count {self.count}"]


class Metrics:
    """The counters; `observe_request` runs on the event loop, `observe_turn` on the worker thread."""

    def __init__(self, core: Any):
        self.core = core
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.prompt_tokens: Counter[str] = Counter()
        self.cached_tokens: Counter[str] = Counter()
        self.generated_tokens: Counter[str] = Counter()
        self.ttft = Histogram(TTFT_BUCKETS)
        self.decode = Histogram(DECODE_BUCKETS)

    def observe_request(self, endpoint: str, method: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, method, status)] += 1

    def observe_turn(self, job: Any, result: Any, error: BaseException | None) -> None:
        """A generation ended (completed, cancelled or failed): its tokens, time to first token and decode time."""
        model = getattr(job.model, "id", "")
        with self._lock:
            self.prompt_tokens[model] += result.prompt_tokens
            self.cached_tokens[model] += int(getattr(result, "cached_tokens", 0) or 0)
            self.generated_tokens[model] += result.completion_tokens
            first = result.time_to_first_token_s
            if first is not None:
                self.ttft.observe(first)
                self.decode.observe(max(result.total_s - first, 0.0))

    def render(self) -> str:
        worker, models = self.core.worker, self.core.models
        stats = worker.stats
        out: list[str] = []
        with self._lock:
            _family(out, "turnspec_requests_total", "counter", "HTTP requests by endpoint (route path), method and status",
                    [(f'endpoint="{_label(e)}",method="{_label(m)}",status="{s}"', n)
                     for (e, m, s), n in sorted(self.requests.items())])
            for name, counter, what in (
                    ("turnspec_prompt_tokens_total", self.prompt_tokens, "prompt tokens of finished generations"),
                    ("turnspec_cached_prompt_tokens_total", self.cached_tokens,
                     "prompt tokens reused from a cache instead of evaluated"),
                    ("turnspec_generated_tokens_total", self.generated_tokens, "tokens generated")):
                _family(out, name, "counter", what,
                        [(f'model="{_label(m)}"', counter.get(m, 0)) for m in models.models])
            out += ["# HELP turnspec_time_to_first_token_seconds from the start of a generation to its first token",
                    "# TYPE turnspec_time_to_first_token_seconds histogram",
                    *self.ttft.lines("turnspec_time_to_first_token_seconds"),
                    "# HELP turnspec_decode_seconds from the first token of a generation to its last",
                    "# TYPE turnspec_decode_seconds histogram", *self.decode.lines("turnspec_decode_seconds")]
        _family(out, "turnspec_generations_total", "counter", "generations by how they ended",
                [(f'outcome="{k}"', getattr(stats, k)) for k in ("completed", "cancelled", "skipped", "failed")])
        _family(out, "turnspec_queue_depth", "gauge", "requests waiting for the generation worker",
                [("", worker.queued)])
        _family(out, "turnspec_active_generations", "gauge", "generations running now", [("", stats.active)])
        _family(out, "turnspec_slots", "gauge", "generations the resident engine runs together",
                [("", stats.parallel)])
        _family(out, "turnspec_model_swaps_total", "counter", "model loads (one resident model at a time)",
                [("", models.swaps)])
        _family(out, "turnspec_model_loaded", "gauge", "1 for the resident model",
                [(f'model="{_label(m)}"', int(models.resident is not None and models.resident.id == m))
                 for m in models.models])
        return "\n".join(out) + "\n"


def _family(out: list[str], name: str, kind: str, what: str, samples: list[tuple[str, float]]) -> None:
    out += [f"# HELP {name} {what}", f"# TYPE {name} {kind}"]
    out += [f"{name}{{{labels}}} {_number(v)}" if labels else f"{name} {_number(v)}" for labels, v in samples]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class RequestCounter:
    """ASGI middleware: each HTTP request counted once it has been answered, under its route's path."""

    def __init__(self, app: Any, metrics: Metrics, routes: Callable[[], list[Any]]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an app that raises before answering

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.observe_request(self._endpoint(scope), scope.get("method", ""), status)

    def _endpoint(self, scope: dict[str, Any]) -> str:
        for route in self.routes():
            match, _ = route.matches({**scope, "type": "http"})
            if match != Match.NONE:
                return getattr(route, "path", UNMATCHED)
        return UNMATCHED


def register(app: FastAPI, core: Any) -> None:
    metrics = Metrics(core)
    app.state.metrics = metrics
    core.worker.listeners.append(metrics.observe_turn)
    app.add_middleware(RequestCounter, metrics=metrics, routes=lambda: app.router.routes)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def scrape() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)
