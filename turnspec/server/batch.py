"""Continuous batching in the server: the worker thread decodes every running request in one llama.cpp batch.

Each step: start queued jobs in free slots (FIFO; a job for another model waits until the batch has drained),
drop the jobs whose clients left (their slots free at once), decode one batch, and feed each sampled token to
its request's reader (`TurnFeed`, the same reading as one-at-a-time generation). A request ends on its stop set,
its reader's stop, its token budget, or a failure; each has its own sampling and constraint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chat import TurnFeed, TurnResult
from ..engines.base import Sampled
from .jobs import NO_JOB, Finished, Job

if TYPE_CHECKING:
    from .worker import GenerationWorker


class BatchRun:
    """One request in the batch: its reader, its budget and its llama.cpp sequence."""

    def __init__(self, job: Job, engine: Any):
        options = job.options
        self.job = job
        self.result = TurnResult()
        self.budget = engine.budget(job.enc.ids, options.max_tokens)  # EngineError: prompt longer than the context
        self.turn = TurnFeed(job.model.spec, job.enc, options, self.result, reader=job.reader, stop_ids=job.stop_ids)
        self.seq = engine.batcher.start([int(t) for t in job.enc.ids], temperature=options.temperature,
                                        top_p=options.top_p, seed=options.seed, constraint=options.constraint,
                                        logprobs=options.logprobs)
        self.result.cached_tokens = self.seq.reused

    def take(self, token: int) -> bool:
        """Read one sampled token; True when the request is complete."""
        options = self.job.options
        if options.logprobs is not None:
            self.job.emit(self.seq.sampler.last)
        elif options.token_ids:
            self.job.emit(Sampled(token))
        for event in self.turn.feed(token):
            self.job.emit(event)
        return self.turn.done or token in self.turn.halt or self.turn.generated >= self.budget

    def finish(self) -> None:
        for event in self.turn.finish(cancelled=self.job.cancel.is_set()):
            self.job.emit(event)


def run_batch(worker: GenerationWorker, engine: Any, first: Job) -> Any:
    """Serve `first` and every job that follows for the same model, `engine.parallel` at a time.

    Returns the job it took from the queue but could not start (another model's, or the stop sentinel None),
    or NO_JOB when the queue ran empty and the batch drained.
    """
    runs: dict[Any, BatchRun] = {}
    try:
        return _serve(worker, engine, first, runs)
    except Exception as exc:  # a bug here ends the batch's requests with a 500, never the worker thread
        for seq in list(runs):
            _end(worker, engine.batcher, runs, seq, exc)
        engine.reset()
        return NO_JOB


def _serve(worker: GenerationWorker, engine: Any, first: Job, runs: dict[Any, BatchRun]) -> Any:
    batcher = engine.batcher
    waiting: Any = first
    while True:
        if waiting is NO_JOB and batcher.free_slots and not worker.stopping:
            waiting = worker.take_nowait()
        while waiting is not NO_JOB and waiting is not None and batcher.free_slots:
            if waiting.model is not worker.models.resident:
                break  # another model: it starts after this batch has drained
            job, waiting = waiting, NO_JOB
            if job.cancel.is_set():
                worker.skip(job)
            else:
                _admit(worker, engine, job, runs)
            if batcher.free_slots and not worker.stopping:
                waiting = worker.take_nowait()
        for seq, run in list(runs.items()):
            if run.job.cancel.is_set():  # the client left: free its slot now
                _end(worker, batcher, runs, seq)
        if not runs:
            return waiting
        try:
            sampled = batcher.step()
        except Exception as exc:  # a failed decode ends every request of this batch, not the server
            for seq in list(runs):
                _end(worker, batcher, runs, seq, exc)
            engine.reset()
            continue
        for seq, token in sampled:
            run = runs.get(seq)
            if run is not None and run.take(token):
                _end(worker, batcher, runs, seq)


def _admit(worker: GenerationWorker, engine: Any, job: Job, runs: dict[Any, BatchRun]) -> None:
    worker.count_start(job)
    try:
        run = BatchRun(job, engine)
    except Exception as exc:
        worker.count_end(job, TurnResult(), exc)
        job.emit(Finished(TurnResult(), exc))
        return
    runs[run.seq] = run


def _end(worker: GenerationWorker, batcher: Any, runs: dict[Any, BatchRun], seq: Any,
         error: BaseException | None = None) -> None:
    run = runs.pop(seq)
    batcher.release(seq)
    if error is None:
        try:
            run.finish()
        except Exception as exc:
            error = exc
    worker.count_end(run.job, run.result, error)
    run.job.emit(Finished(run.result, error))
