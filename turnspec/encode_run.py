"""`turnspec encode` as a library call: a conversations file to a Parquet file of training columns, on N processes.

Chunks of rows go to worker processes in order and come back in order, so the output is the same for any number
of processes. Each worker loads the model once and uses one core (the tokenizer's own thread pool is off: the
processes are the parallelism). A bad row (not UTF-8, not JSON, nested too deep, not a conversation, rejected by
the template) is a line in the report, never the end of the run. The Parquet file's metadata records what produced
it (`ChatEncoder.provenance()`, under the key "turnspec").
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .datafiles import atomic_parquet, check_input, count_rows, parse_jsonl_row, read_chunks
from .training import TOO_DEEP, ChatEncoder, EncodedRow, arrow_schema

CHUNK_ROWS = 256
PROVENANCE_KEY = "turnspec"  # the Parquet metadata key of ChatEncoder.provenance() (JSON)


@dataclass
class EncodeReport:
    """What a run did: rows in and out, tokens, the share of tokens trained on, and every skipped row."""

    input: str
    output: str
    model: str
    rows_read: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    rows_truncated: int = 0
    rows_too_long: int = 0
    rows_inexact_mask: int = 0
    rows_no_assistant_tokens: int = 0
    tokens: int = 0
    assistant_tokens: int = 0
    seconds: float = 0.0
    processes: int = 1
    max_length: int | None = None
    overflow: str = "truncate"
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"row": n, "error": "..."}
    inexact: list[dict[str, Any]] = field(default_factory=list)  # {"row": n, "reason": "..."}: written, mask not exact
    provenance: dict[str, Any] = field(default_factory=dict)  # also in the Parquet file's metadata

    @property
    def masked_share(self) -> float:
        return self.assistant_tokens / self.tokens if self.tokens else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "masked_share": round(self.masked_share, 6),
                "rows_per_second": round(self.rows_per_second, 1)}


def encode_file(input_path: Path, output_path: Path, encoder: ChatEncoder, *, num_proc: int = 1,
                on_progress: Callable[[int, int | None], None] | None = None) -> EncodeReport:
    """Encode every row of `input_path` into `output_path` (Parquet: row, input_ids, assistant_masks, labels,
    length; the provenance in its metadata). `on_progress(rows done, total or None)` is called after each chunk
    (JSON Lines count lines)."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_input(input_path)
    total = count_rows(input_path) if on_progress is not None else None  # a pass over the file: only for a bar
    encoder.spec  # fail on a bad model here, in one line, before any worker starts
    procs = max(1, num_proc or os.cpu_count() or 1)
    report = EncodeReport(str(input_path), str(output_path), encoder.model or encoder.spec.name, processes=procs,
                          max_length=encoder.max_length, overflow=encoder.overflow, provenance=encoder.provenance())
    schema = arrow_schema(with_row=True).with_metadata({PROVENANCE_KEY: json.dumps(report.provenance)})
    t0 = time.perf_counter()
    chunks = read_chunks(input_path, CHUNK_ROWS)
    with atomic_parquet(output_path, schema) as writer:
        for start, rows in _encoded(chunks, encoder, procs):
            _add(report, writer, start, rows)
            if on_progress is not None:
                on_progress(start + len(rows), total)
    report.seconds = time.perf_counter() - t0
    return report


def _encoded(chunks: Iterable[tuple[int, list[Any]]], encoder: ChatEncoder, procs: int
             ) -> Iterator[tuple[int, list[EncodedRow | None]]]:
    if procs == 1:
        for start, rows in chunks:
            yield start, encode_chunk(encoder, rows)
        return
    # concurrent.futures, not multiprocessing.Pool: a Pool whose worker was killed (SIGTERM to the process group)
    # can hang its parent forever in terminate() on a queue lock the dead worker held; the executor notices a dead
    # worker and breaks instead
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn"),  # never fork: tokenizer threads
                               initializer=_init_worker, initargs=(encoder,))
    in_flight: deque[Any] = deque()  # a few chunks per worker: in order, and never the whole file in memory
    try:
        for start, rows in chunks:
            in_flight.append(pool.submit(_work, (start, _pickled(rows))))
            if len(in_flight) >= 2 * procs:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    except BaseException:  # Ctrl-C, SIGTERM, a failed write: the workers stop now, not after their chunk
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool: Any) -> None:
    """Cancel what is queued and kill the workers, so an interrupted run exits at once and leaves no process."""
    workers = multiprocessing.active_children()
    for worker in workers:  # first: nothing below may wait on a worker that is still running
        worker.kill()
    for worker in workers:
        worker.join(timeout=5)
    pool.shutdown(wait=False, cancel_futures=True)


class TooDeep:
    """Stands in for a row nested too deeply to send to a worker (pickling recurses; the pool would die of it)."""


def _pickled(rows: list[Any]) -> bytes:
    """The chunk as bytes for a worker, pickled here where a RecursionError can be one row's error."""
    try:
        return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
    except RecursionError:
        return pickle.dumps([row if _picklable(row) else TooDeep() for row in rows], protocol=pickle.HIGHEST_PROTOCOL)


def _picklable(row: Any) -> bool:
    try:
        pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
        return True
    except RecursionError:
        return False


_WORKER: ChatEncoder | None = None
_WORKER_ERROR: BaseException | None = None


def _init_worker(encoder: ChatEncoder) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool, a worker must not print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    global _WORKER, _WORKER_ERROR
    _WORKER = encoder
    try:
        encoder.spec  # load the model once per process
    except Exception as exc:  # an initializer that raises makes the pool respawn workers forever: report it on use
        _WORKER_ERROR = exc


def _work(chunk: tuple[int, bytes]) -> tuple[int, list[EncodedRow | None]]:
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    assert _WORKER is not None
    start, data = chunk
    return start, encode_chunk(_WORKER, pickle.loads(data))  # unpickling does not recurse


def encode_chunk(encoder: ChatEncoder, rows: list[Any]) -> list[EncodedRow | None]:
    """Each row encoded; None for a blank JSON Lines line (not a row). A row never raises: whatever goes wrong with
    it is its error (only a model that does not load stops the run)."""
    out: list[EncodedRow | None] = []
    for row in rows:
        if row is None:
            out.append(None)
            continue
        if isinstance(row, TooDeep):
            out.append(EncodedRow(error=TOO_DEEP))
            continue
        if isinstance(row, (bytes, str)):  # a JSON Lines row, decoded and parsed here (in the worker)
            try:
                row = parse_jsonl_row(row)
            except ValueError as exc:
                out.append(EncodedRow(error=str(exc)))
                continue
        out.append(encoder.encode_row(row))
    return out


def _add(report: EncodeReport, writer: Any, start: int, rows: list[EncodedRow | None]) -> None:
    import pyarrow as pa

    good = []
    for i, row in enumerate(rows):
        if row is None:
            continue
        report.rows_read += 1
        if row.error is not None:
            report.rows_skipped += 1
            report.rows_too_long += row.too_long
            report.skipped.append({"row": start + i + 1, "error": row.error})
            continue
        good.append((start + i + 1, row))
        report.rows_truncated += row.truncated
        if not row.exact:
            report.rows_inexact_mask += 1
            report.inexact.append({"row": start + i + 1, "reason": row.mask_note})
        masked = sum(row.assistant_masks)
        report.rows_no_assistant_tokens += masked == 0
        report.tokens += row.length
        report.assistant_tokens += masked
    if good:
        writer.write_table(pa.table({
            "row": [n for n, _ in good],
            "input_ids": [r.input_ids for _, r in good],
            "assistant_masks": [r.assistant_masks for _, r in good],
            "labels": [r.labels for _, r in good],
            "length": [r.length for _, r in good],
        }, schema=arrow_schema(with_row=True)))
    report.rows_written += len(good)
