"""`turnspec encode`: conversations (JSON Lines, JSON, Parquet) to a Parquet file of training columns."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import TurnspecError
from .common import fail_cleanly, parse_kwargs

SHOWN_ROWS = 10  # skipped and inexact rows listed in the text report; --json and --report list them all
TERMINATED_EXIT = 128 + signal.SIGTERM  # 143, as a shell reports a process SIGTERM ended


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so the temporary output is removed and the worker pool stopped."""


def register(app: typer.Typer) -> None:
    app.command("encode")(encode)


def encode(
    data: Path = typer.Argument(..., help="Conversations: .jsonl, .json or .parquet with a `messages` column (OpenAI format) and an optional `tools` column."),
    output: Path = typer.Option(..., "-o", "--output", help="The Parquet file to write (replaced only when complete)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model folder, .gguf file or cached repo id (default: SmolLM2-135M-Instruct)."),
    num_proc: int = typer.Option(1, "--num-proc", help="Processes to encode with; 0 = one per CPU core."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Longest conversation in tokens; see --overflow."),
    overflow: str = typer.Option("truncate", "--overflow", help="For rows over --max-length: truncate (keep the first tokens) or drop (skip the row, listed in the report)."),
    train_prompt_supplied: bool = typer.Option(False, "--train-prompt-supplied", help="Also train on what the generation prompt writes for the model (its empty <think></think>, the header)."),
    specials_in_content: str = typer.Option("text", "--specials-in-content", help="Control strings typed into messages: text (default: they stay text, no turn can be written from inside a message) or parse (transformers' apply_chat_template ids, for parity)."),
    kw: Optional[list[str]] = typer.Option(None, "--kw", help="Template variable for every row, key=value (JSON value)."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Also write the full report (every skipped row) to this JSON file."),
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope; data is the report."),
) -> None:
    """Encode conversations for fine-tuning: input_ids, assistant_masks, labels (-100 outside the mask), length.

    The columns TRL's SFTTrainer takes as a pre-tokenized dataset with assistant-only loss. The mask comes from the
    model's own template (any template, with or without {% generation %}). Rows the template rejects are skipped
    and listed; they never stop the run. Exit codes: 0 done, 1 an error (one line), 130 Ctrl-C, 143 SIGTERM; an
    interrupted run leaves the previous output file as it was.
    """
    with fail_cleanly("encode", as_json), _terminate_cleanly(as_json):
        _encode(data, output, model, num_proc, max_length, overflow, not train_prompt_supplied, kw, report_file,
                as_json, specials_in_content)


@contextmanager
def _terminate_cleanly(as_json: bool) -> Any:
    """SIGTERM raises Terminated (once: a second one during the cleanup is ignored), then exits 143 in one line."""
    def on_term(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        yield
        return
    try:
        yield
    except Terminated:
        message = "terminated (SIGTERM); the output file was not written (a previous one is left as it was)"
        print(f"turnspec: error: {message}", file=sys.stderr)
        if as_json:
            from .envelope import emit

            emit("encode", None, error={"code": "terminated", "message": message, "exit_code": TERMINATED_EXIT})
        # The output is cleaned up and said: exit now. The interpreter's own exit joins the worker pool's threads
        # and children, which a signal to the whole process group can leave waiting on each other (CI saw a hang).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(TERMINATED_EXIT)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _encode(data: Path, output: Path, model: Optional[str], num_proc: int, max_length: Optional[int], overflow: str,
            mask_prompt_supplied: bool, kw: Optional[list[str]], report_file: Optional[Path], as_json: bool,
            specials_in_content: str = "text") -> None:
    from ..encode_run import encode_file
    from ..training import OVERFLOW, ChatEncoder

    if overflow not in OVERFLOW:
        raise TurnspecError(f"--overflow {overflow!r}: use truncate or drop")
    if max_length is not None and max_length < 1:
        raise TurnspecError(f"--max-length {max_length}: give a positive number of tokens")
    if num_proc < 0:
        raise TurnspecError(f"--num-proc {num_proc}: give a number of processes (0 = one per core)")
    _need_pyarrow()
    if model is None:
        from ..default_model import default_model_path

        model = str(default_model_path())
    encoder = ChatEncoder(model, max_length=max_length, overflow=overflow, mask_prompt_supplied=mask_prompt_supplied,
                          template_kwargs=parse_kwargs(kw), specials_in_content=specials_in_content)
    with _progress(enabled=not as_json) as on_progress:
        report = encode_file(data, output, encoder, num_proc=num_proc, on_progress=on_progress)
    if report_file is not None:
        _write_json(report_file, report.as_dict())
    if as_json:
        from .envelope import emit

        emit("encode", report.as_dict())
        return
    _print_report(report, report_file)


def _need_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        raise TurnspecError("turnspec encode writes Parquet and needs pyarrow: pip install 'turnspec[data]'") from None


class _progress:
    """A rich progress bar on stderr (rows, rate, ETA), or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._bar = Progress(TextColumn("encoding"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]:>8} rows/s"), TimeElapsedColumn(), TextColumn("ETA"),
                             TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task("encode", total=None, rate="")
        return self._update

    def _update(self, done: int, total: int | None) -> None:
        task = self._bar.tasks[0]
        rate = f"{done / task.elapsed:,.0f}" if task.elapsed else ""
        self._bar.update(self._task, completed=done, total=total, rate=rate)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _print_report(report: Any, report_file: Optional[Path]) -> None:
    r = report
    typer.echo(f"wrote {r.output}: {r.rows_written:,} of {r.rows_read:,} rows, {r.tokens:,} tokens, "
               f"{r.masked_share:.1%} trained on (assistant mask), {r.rows_per_second:,.0f} rows/s on "
               f"{r.processes} process{'es' if r.processes > 1 else ''}")
    notes = []
    if r.rows_truncated:
        notes.append(f"{r.rows_truncated:,} rows truncated to {r.max_length} tokens")
    if r.rows_too_long:
        notes.append(f"{r.rows_too_long:,} rows longer than {r.max_length} tokens dropped")
    if r.rows_no_assistant_tokens:
        notes.append(f"{r.rows_no_assistant_tokens:,} rows have no assistant tokens (nothing to train on)")
    for note in notes:
        typer.echo(f"  {note}")
    if r.rows_inexact_mask:
        typer.echo(f"{r.rows_inexact_mask:,} rows written with an inexact mask (`turnspec render --tokens` shows "
                   "one):")
        _list_rows([(item["row"], item["reason"]) for item in r.inexact], r.rows_inexact_mask, report_file)
    if r.rows_skipped:
        typer.echo(f"skipped {r.rows_skipped:,} rows:")
        _list_rows([(item["row"], item["error"]) for item in r.skipped], r.rows_skipped, report_file)


def _list_rows(rows: list[tuple[int, str]], total: int, report_file: Optional[Path]) -> None:
    """The first SHOWN_ROWS rows (row number: why), then how many more and where all of them are."""
    for row, why in rows[:SHOWN_ROWS]:
        typer.echo(f"  row {row}: {why}")
    more = total - SHOWN_ROWS
    if more > 0:
        where = f"all are in {report_file}" if report_file else "--report FILE or --json lists them all"
        typer.echo(f"  … {more:,} more ({where})")


def _write_json(path: Path, data: Any) -> None:
    import errno
    import json

    from ..onboard.profile import write_atomic

    try:
        if not path.parent.is_dir():  # write_atomic would create it: a mistyped folder stays an error
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise TurnspecError(f"{path}: cannot write the report ({exc.strerror})") from None
