"""Conversation files in, Parquet out: JSON Lines, JSON and Parquet rows read in chunks; Parquet written atomically.

Rows are read as cheaply as possible in the reading process (JSON Lines stay unparsed text) so that parsing runs in
the encoding workers. A line that is not JSON is a bad row like any other, reported with its row number, never a
reason to stop. Output goes to a temporary file beside the target, renamed over it only when complete: an
interrupted or failed run leaves the previous file (or none), never half of one.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import TurnspecError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def data_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TurnspecError(f"{path}: unknown data format {path.suffix or '(no suffix)'!r}; use .jsonl, .json or "
                            ".parquet (a `messages` column of OpenAI-format conversations)")
    return fmt


def check_input(path: Path) -> str:
    """The format of an input file that exists; one-line errors otherwise."""
    fmt = data_format(path)
    if not path.is_file():
        raise TurnspecError(f"{path}: no such file (the conversations to encode)")
    return fmt


def count_rows(path: Path) -> int | None:
    """How many rows `path` holds (for progress), when that is cheap to know."""
    fmt = check_input(path)
    if fmt == "parquet":
        return _parquet_file(path).metadata.num_rows
    if fmt == "jsonl":
        n = 0
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                n += block.count(b"\n")
        return n  # blank lines are skipped, so this is an upper bound
    return None


def read_chunks(path: Path, chunk_rows: int = 256) -> Iterator[tuple[int, list[Any]]]:
    """(index of the first row, rows) for consecutive chunks of `path`. JSON Lines rows are raw text (parsed by the
    encoder), None for a blank line; other rows are Python objects."""
    fmt = check_input(path)
    if fmt == "jsonl":
        yield from _chunks(_jsonl_rows(path), chunk_rows)
    elif fmt == "json":
        yield from _chunks(iter(_json_rows(path)), chunk_rows)
    else:
        yield from _parquet_chunks(path, chunk_rows)


def _chunks(rows: Iterator[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    start, chunk = 0, []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield start, chunk
            start, chunk = start + size, []
    if chunk:
        yield start, chunk


def _jsonl_rows(path: Path) -> Iterator[str | None]:
    """Each line, None for a blank one (kept so that row numbers are line numbers)."""
    with path.open("r", encoding="utf-8", errors="replace", newline="\n") as f:
        for line in f:
            yield line if line.strip() else None


def _json_rows(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TurnspecError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
                            "a file with one broken row is better as JSON Lines (.jsonl)") from None
    if isinstance(data, dict) and isinstance(data.get("messages"), list) and data["messages"] \
            and isinstance(data["messages"][0], dict) and "role" in data["messages"][0]:
        return [data]  # one conversation
    if isinstance(data, dict):  # {"train": [...]} or {"data": [...]}: the one list of rows in it
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    if not isinstance(data, list):
        raise TurnspecError(f"{path}: expected a JSON list of rows (objects with a `messages` list)")
    return data


def _parquet_chunks(path: Path, size: int) -> Iterator[tuple[int, list[Any]]]:
    file = _parquet_file(path)
    start = 0
    for batch in file.iter_batches(batch_size=size):
        rows = batch.to_pylist()
        yield start, rows
        start += len(rows)


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several kinds for a corrupt file
        raise TurnspecError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})") from None


def parse_jsonl_row(line: str) -> Any:
    """A JSON Lines row; raises ValueError with the parser's message (the encoder reports it as the row's error)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at column {exc.colno} ({exc.msg})") from None


@contextmanager
def atomic_parquet(path: Path, schema: Any) -> Iterator[Any]:
    """A `pyarrow.parquet.ParquetWriter` on a temporary file beside `path`, renamed over it when the block ends
    without an error; removed otherwise."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise TurnspecError(f"{path}: the output is Parquet; name it with a .parquet suffix")
    if not path.parent.is_dir():
        raise TurnspecError(f"{path}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = pq.ParquetWriter(tmp, schema)
    try:
        yield writer
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
