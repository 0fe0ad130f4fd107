"""The generation queue: requests wait in FIFO order for a single worker thread, the only one that touches
engines. The thread asks the model manager for the job's model (loading it, and unloading the resident one, when
it is another) and hands each reader event to the request's asyncio queue with `call_soon_threadsafe`: the event
loop never blocks on the engine, and the engine never waits for a client (a slow reader only grows its own queue,
bounded by max_tokens). A request's `cancel` Event stops its generation before the next token, or skips it if it
has not started yet.

An engine that decodes one sequence at a time runs `stream_turn` job after job. The llama.cpp engine with
`--parallel N` decodes up to N together (batch.py): the queue feeds its free slots in order, a finished or
cancelled sequence frees its slot at once, and a job for another model waits until the batch has drained.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

from ..chat import TurnResult, stream_turn
from .batch import run_batch
from .jobs import NO_JOB, Finished, Job


log = logging.getLogger("turnspec.server")
__all__ = ["NO_JOB", "Finished", "GenerationWorker", "Job", "QueueFull", "WorkerStats"]


class QueueFull(Exception):
    pass


@dataclass
class WorkerStats:
    """Counters for /health and tests: cancelled = stopped mid-generation, skipped = cancelled while queued."""

    submitted: int = 0
    started: int = 0
    completed: int = 0
    cancelled: int = 0
    skipped: int = 0
    failed: int = 0
    tokens: int = 0
    busy: bool = False
    active: int = 0  # generations running now (up to `parallel`)
    parallel: int = 1  # how many the resident engine runs together


class GenerationWorker:
    """A thread that owns the engines (through the model manager) and runs queued jobs one after another."""

    def __init__(self, models: Any, *, max_queue: int = 256):
        self.models = models
        self.stats = WorkerStats()
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="turnspec-generation", daemon=True)
        self._lock = threading.Lock()
        self._active: list[Job] = []  # the running jobs (one, or a batch's)
        self._stopping = False
        # Called on this thread with (job, TurnResult, error) when a generation ends (metrics.py): must not block.
        self.listeners: list[Callable[[Job, TurnResult, BaseException | None], None]] = []

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def queued(self) -> int:
        return self._jobs.qsize()

    def submit(self, job: Job) -> None:
        """Queue a job; raise `QueueFull` when `max_queue` requests are already waiting."""
        if self._stopping:
            raise QueueFull("the server is shutting down")
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self._jobs.maxsize} requests are already waiting") from None
        with self._lock:
            self.stats.submitted += 1

    def stop(self, timeout: float = 10.0) -> bool:
        """Cancel the running and queued jobs, then end the thread. True when it ended (the engine is free)."""
        self._stopping = True
        for running in list(self._active):
            running.cancel.set()
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel.set()
                job.emit(Finished(TurnResult(), skipped=True))
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        carried: list[Job | None] = []  # a job the batch loop took from the queue but could not start
        while True:
            job = carried.pop() if carried else self._jobs.get()
            if job is None:
                return
            if job.cancel.is_set():  # the client left while waiting
                self.skip(job)
                continue
            try:
                engine = self.models.acquire(job.model)
            except Exception as exc:  # a model that does not load fails this request only
                self._fail_to_start(job, exc)
                continue
            with self._lock:
                self.stats.parallel = int(getattr(engine, "parallel", 1) or 1)
            if self.stats.parallel > 1:
                left = run_batch(self, engine, job)
                if left is not NO_JOB:
                    carried.append(left)
            else:
                self._generate(job, engine)

    def take_nowait(self) -> Any:
        """The next queued job (None: the stop sentinel), or NO_JOB when the queue is empty."""
        try:
            return self._jobs.get_nowait()
        except queue.Empty:
            return NO_JOB

    def skip(self, job: Job) -> None:
        with self._lock:
            self.stats.skipped += 1
        job.emit(Finished(TurnResult(), skipped=True))

    def _fail_to_start(self, job: Job, exc: BaseException) -> None:
        with self._lock:
            self.stats.started += 1
            self.stats.failed += 1
        job.emit(Finished(TurnResult(), exc))

    def count_start(self, job: Job) -> None:
        with self._lock:
            self.stats.started += 1
            self._active.append(job)
            self.stats.active = len(self._active)
            self.stats.busy = True

    def count_end(self, job: Job, result: TurnResult, error: BaseException | None) -> None:
        with self._lock:
            if job in self._active:
                self._active.remove(job)
            self.stats.active = len(self._active)
            self.stats.busy = bool(self._active)
            self.stats.tokens += result.completion_tokens
            if error is not None:
                self.stats.failed += 1
            elif job.cancel.is_set():
                self.stats.cancelled += 1
            else:
                self.stats.completed += 1
        for listen in self.listeners:
            try:
                listen(job, result, error)
            except Exception:  # a listener's bug must not end the worker
                log.exception("a generation listener failed")

    def _generate(self, job: Job, engine: Any) -> None:
        result = TurnResult()
        error: BaseException | None = None
        self.count_start(job)
        try:
            sampled = job.emit if job.options.logprobs is not None or job.options.token_ids else None
            for event in stream_turn(job.model.spec, engine, job.enc, job.options, result, cancel=job.cancel,
                                     reader=job.reader, stop_ids=job.stop_ids, on_sampled=sampled):
                job.emit(event)
        except Exception as exc:  # an engine failure ends this request only; the worker goes on
            error = exc
        finally:
            self.count_end(job, result, error)
        job.emit(Finished(result, error))
