"""Conversation files in, Parquet out: JSON Lines, JSON and Parquet rows read in chunks; Parquet written atomically.

Rows are read as cheaply as possible in the reading process (JSON Lines stay undecoded bytes) so that decoding and
parsing run in the encoding workers. A line that is not UTF-8, not JSON, or nested deeper than the parser goes is a
bad row like any other, reported with its row number, never a reason to stop (and never "repaired" into a good row).
Output goes to a temporary file beside the target, renamed over it only when complete: an interrupted or failed run
(a full disk, a folder that refuses the file) leaves the previous file (or none), never half of one.
"""

from __future__ import annotations

import errno
import json
import os
import re
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
    """(index of the first row, rows) for consecutive chunks of `path`. JSON Lines rows are raw bytes (decoded and
    parsed by `parse_jsonl_row` in the worker), None for a blank line; other rows are Python objects."""
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


def _jsonl_rows(path: Path) -> Iterator[bytes | None]:
    """Each line as bytes, None for a blank one (kept so that row numbers are line numbers). Bytes, not text: a line
    that is not UTF-8 must be that row's error, not silently "replaced" and encoded as a good row."""
    with path.open("rb") as f:
        for line in f:
            yield line if line.strip() else None


def _json_rows(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise TurnspecError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
                            "a file with one broken row is better as JSON Lines (.jsonl)") from None
    except UnicodeDecodeError as exc:
        raise TurnspecError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                            "save it as UTF-8, or as JSON Lines (.jsonl) where a bad line is only that row's error"
                            ) from None
    except RecursionError:
        raise TurnspecError(f"{path}: nested too deeply for the JSON parser; as JSON Lines (.jsonl) such a row is "
                            "only that row's error") from None
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


def parse_jsonl_row(line: bytes | str) -> Any:
    """A JSON Lines row; raises ValueError with a one-line reason (the encoder reports it as the row's error)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); save the "
                             "file as UTF-8") from None
    try:
        return json.loads(line.lstrip("\ufeff"))  # a byte order mark before the first row is not an error
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at column {exc.colno} ({exc.msg})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse (Python's recursion limit): flatten the row") from None


@contextmanager
def atomic_parquet(path: Path, schema: Any) -> Iterator[Any]:
    """A `pyarrow.parquet.ParquetWriter` on a temporary file beside `path`, synced and renamed over it when the block
    ends without an error; removed otherwise. A write that fails (read-only folder, full disk) is a one-line
    TurnspecError, and `path` is left as it was."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise TurnspecError(f"{path}: the output is Parquet; name it with a .parquet suffix")
    if not path.parent.is_dir():
        raise TurnspecError(f"{path}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = None
    try:
        with _writing(path):
            writer = pq.ParquetWriter(tmp, schema)
        yield _CheckedWriter(writer, path)
        with _writing(path):
            writer.close()
            writer = None
            _sync(tmp, path)
            os.replace(tmp, path)
    except BaseException:
        if writer is not None:
            try:
                writer.close()
            except OSError:  # the same full disk
                pass
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


class _CheckedWriter:
    """The Parquet writer with its OSErrors (ENOSPC, EIO) as one-line TurnspecErrors that name the output."""

    def __init__(self, writer: Any, path: Path):
        self._writer, self._path = writer, path

    def write_table(self, table: Any) -> None:
        with _writing(self._path):
            self._writer.write_table(table)


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:  # pyarrow's IO errors are OSErrors too, with the errno only in the message
        state = "left as it was" if path.exists() else "not written"
        raise TurnspecError(f"{path}: cannot write the output ({_reason(exc)}); {path.name} is {state}") from None


def _reason(exc: OSError) -> str:
    code = exc.errno
    if code is None:
        found = re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)
        code = int(found.group(1)) if found else None
    if code == errno.ENOSPC:
        return "no space left on the device"
    if code is not None:
        return os.strerror(code)
    return " ".join(str(exc).split())


def _sync(tmp: Path, path: Path) -> None:
    """The finished file on disk before the rename (a crash after it never leaves an empty file), with the mode of
    the file it replaces."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
