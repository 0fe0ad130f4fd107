"""The engine contract: token ids in, token ids out, stopping on *turnspec's* stop set.

An engine never decides when a turn is over by itself: engines know one eos id, while a chat
template often ends turns with several (`<|im_end|>`, `<|eot_id|>`, `<|end|>`...). So every engine
runs an endless decode loop and `stop_rules` ends it on the caller's full stop set, at
`max_tokens`, at the end of the context, or when `cancel` is set.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from turnspec.errors import TurnspecError


class EngineError(TurnspecError):
    """An engine could not be loaded or run (missing extra package, prompt longer than the context)."""


@dataclass(frozen=True, slots=True)
class Sampled:
    """One generated token, for callers that asked for token ids or logprobs (the server's `logprobs`,
    `return_token_ids`). `logprob` is the token's log-probability under the model's own distribution (the raw
    logits, before temperature, top_p or a grammar), `top` the `(id, logprob)` of the most likely tokens."""

    id: int
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()


@runtime_checkable
class Engine(Protocol):
    """What turnspec needs from an inference engine.

    `generate` yields generated token ids one at a time. When a token in `stop_ids` is sampled it
    is yielded as the last item (so the caller can tell which stop fired) and generation ends.
    It also ends after `max_tokens` ids, at the end of the context window, or as soon as `cancel`
    is set (checked before each decode step). `temperature == 0` is greedy decoding.
    `constraint` (turnspec.constrain.Constraint) restricts what may be sampled: a forced tool call, JSON.
    One engine runs one generation at a time: do not interleave two `generate` iterators.
    """

    name: str
    context_length: int

    def generate(
        self,
        prompt_ids: list[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_ids: Collection[int] = (),
        cancel: threading.Event | None = None,
        constraint: Any = None,
    ) -> Iterator[int]: ...

    def close(self) -> None: ...


class EngineBase:
    """Shared plumbing for the concrete engines: context manager and prompt checks."""

    name: str = "engine"
    context_length: int = 0
    constrain_backend: str | None = "llguidance"  # how `constraint` is enforced: "gbnf" (llama.cpp), "llguidance"
    parallel: int = 1  # sequences decoded together (the llama.cpp engine's batch)
    logprobs: bool = False  # `generate(logprobs=k, on_logprobs=...)` reports each token's Sampled (llama.cpp)
    # prompt ids the last generation found in the KV cache and did not evaluate again (None: not known)
    last_reused: int | None = None

    _cached_ids: Sequence[int] = ()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    @property
    def loaded(self) -> bool:
        """False once closed: generating then is an error, not a crash inside the backend."""
        return True

    @property
    def cached_ids(self) -> list[int]:
        """The ids whose keys/values sit in the KV cache now (for tests and diagnostics)."""
        return list(self._cached_ids)

    def generate(
        self,
        prompt_ids: list[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_ids: Collection[int] = (),
        cancel: threading.Event | None = None,
        constraint: Any = None,
        logprobs: int | None = None,
        on_logprobs: Callable[[Sampled], Any] | None = None,
    ) -> Iterator[int]:
        """Yield sampled ids; see `Engine` for the stop rules. Engines implement `_steps`, an endless decode loop.

        `logprobs` (the number of top alternatives, 0 for none): `on_logprobs` gets each token's `Sampled` before
        the token is yielded; only engines with `logprobs = True` can (the others raise EngineError)."""
        if not self.loaded:
            raise EngineError(f"the {self.name} engine was closed")
        budget = self.budget(prompt_ids, max_tokens)
        extra: dict[str, Any] = {}
        if logprobs is not None:
            if not self.logprobs:
                raise EngineError(f"the {self.name} engine cannot return logprobs (the llamacpp engine can)")
            extra = {"logprobs": logprobs, "on_logprobs": on_logprobs}
        steps = self._steps([int(t) for t in prompt_ids], temperature, top_p, seed, constraint, **extra)
        return stop_rules(steps, max_tokens=budget, stop_ids=stop_ids, cancel=cancel, current=self.claim())

    def _steps(self, prompt_ids: list[int], temperature: float, top_p: float, seed: int | None,
               constraint: Any = None) -> Iterator[int]:
        raise NotImplementedError

    def guide(self, constraint: Any, n_vocab: int) -> Any:
        """Token masks for `constraint` from llguidance (engines that sample themselves); None without one."""
        if constraint is None:
            return None
        from turnspec.constrain.guidance import GuidedSampling, control_tokens, tokenizer_for

        vocab = constraint.vocab
        return GuidedSampling(constraint, tokenizer_for(vocab, n_vocab, constraint.halt_ids), control_tokens(vocab))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def claim(self) -> Callable[[], bool]:
        """Make the generation being started the engine's only live one.

        The KV cache is shared, so an older iterator resumed after a newer `generate` call would
        decode on top of the wrong ids; the returned check lets `stop_rules` refuse that.
        """
        ticket = object()
        self._ticket = ticket
        return lambda: self._ticket is ticket

    def budget(self, prompt_ids: list[int], max_tokens: int) -> int:
        """How many tokens may be generated: `max_tokens`, cut to what the context still holds."""
        if not prompt_ids:
            raise EngineError(f"the {self.name} engine needs at least one prompt token")
        room = self.context_length - len(prompt_ids)
        if room <= 0:
            raise EngineError(
                f"the prompt has {len(prompt_ids)} tokens but the {self.name} engine's context holds "
                f"{self.context_length}: shorten the chat or load with a larger n_ctx"
            )
        return max(0, min(max_tokens, room))


def stop_rules(
    steps: Iterator[int],
    *,
    max_tokens: int,
    stop_ids: Collection[int],
    cancel: threading.Event | None,
    current: Callable[[], bool] | None = None,
) -> Iterator[int]:
    """Drive an endless per-token decode iterator and end it by turnspec's rules.

    `steps` must compute a token only when asked for it (a generator), so that checking `cancel`
    before `next()` really saves the decode step. The stop token is yielded, then the loop ends.
    `current` (from `EngineBase.claim`) is checked before each step too.
    """
    stops = frozenset(stop_ids)
    produced = 0
    try:
        while produced < max_tokens:
            if cancel is not None and cancel.is_set():
                return
            if current is not None and not current():
                raise EngineError("a newer generate() call on this engine superseded this one: finish or close a generation before starting the next")
            try:
                token = int(next(steps))
            except StopIteration:
                return
            if cancel is not None and cancel.is_set():
                return
            produced += 1
            yield token
            if token in stops:
                return
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id lists (how much of a KV cache a new prompt can keep)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def default_threads() -> int:
    """Decode threads for this machine as it is now: the physical cores that are not busy with other work.

    llama.cpp splits every operation evenly across its threads and waits for the slowest, so one thread that has to
    share its core with another process stalls all of them: on 2 cores with one other busy process, SmolLM2 decodes
    74 tok/s with 1 thread and 32 with 2; idle, 73 and 104 (bench/bench_threads.py). Idle cores are measured over
    0.1 s at load.
    """
    return threads_for(physical_cores(), os.cpu_count() or 1, idle_cores())


def threads_for(physical: int, cpus: int, idle: float | None) -> int:
    """All physical cores on an idle machine; one fewer for each of the `cpus` that other work keeps busy (>= 1)."""
    if idle is None:
        return physical
    busy = max(0, round(cpus - idle))
    return max(1, min(physical, physical - busy))


def idle_cores(window_s: float = 0.1) -> float | None:
    """How many CPUs were idle over `window_s` (from /proc/stat); None where the kernel does not say."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(window_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical CPU cores usable by this process: hyper-threads slow llama.cpp-style decoding down."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            phys = core = ""
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
                elif not key and (phys or core):
                    cores.add((phys, core))
                    phys = core = ""
            if phys or core:
                cores.add((phys, core))
    except OSError:
        pass
    if not cores:
        try:  # macOS
            import subprocess

            out = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=2)
            cores = {("", str(i)) for i in range(int(out.stdout.strip()))}
        except Exception:
            pass
    return max(1, min(usable, len(cores) or usable))
