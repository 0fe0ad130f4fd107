"""`turnspec list`: the models on this machine, one line each, with whether turnspec can chat with them correctly.

`--deep` also onboards every model (all probes: system prompt, tools, reasoning, stops) and prints the coverage
table that `turnspec scan` printed before; `scan` remains as a hidden alias of `list --deep`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .common import fail_cleanly

_PROFILES = Path("config") / "models"


def register(app: typer.Typer) -> None:
    app.command("list")(list_models)
    app.command("scan", hidden=True)(scan)


def list_models(
    pattern: Optional[str] = typer.Argument(None, help="Only names matching this glob (org/*) or containing this text."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hugging Face hub cache folder (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."),
    gguf_dir: Optional[list[Path]] = typer.Option(None, "--gguf-dir", help="Also list the .gguf files in this folder (repeatable; default: TURNSPEC_GGUF_DIRS)."),
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope; data is a list of models."),
    quick: bool = typer.Option(False, "--quick", help="Skip the chat readiness check (no template or tokenizer is loaded)."),
    deep: bool = typer.Option(False, "--deep", help="Also onboard every model (all probes) and print the coverage table."),
    save: bool = typer.Option(False, "--save", help="With --deep: save a profile for every model onboarded."),
    profiles: Path = typer.Option(_PROFILES, "--profiles", "--out", help="Profiles folder (shown per model; written by --save)."),
    time_limit: float = typer.Option(2.0, "--time-limit", help="With --deep: seconds each probe rendering may take."),
) -> None:
    """List the models in the Hugging Face cache and GGUF folders: format, size, engine, chat readiness, files."""
    from ..catalog.inventory import check_readiness, find_models, gguf_dirs_from_env
    from ..sources.hf_cache import hub_cache_dir

    with fail_cleanly("list", as_json):
        dirs = list(gguf_dir) if gguf_dir else gguf_dirs_from_env()
        entries = find_models(cache, dirs, pattern)
        notices: list[str] = []
        if not entries:
            where = f"{hub_cache_dir(cache)}" + (f" or {', '.join(map(str, dirs))}" if dirs else "")
            notices.append(f"no models{' matching ' + repr(pattern) if pattern else ''} in {where}; get one with "
                           "`turnspec pull org/name`")
        reports: dict[str, Any] = {}
        with _progress(len(entries), not as_json) as step:
            for entry in entries:
                step(entry.name)
                if not quick or deep:
                    check_readiness(entry, profiles)
                if deep and entry.path is not None:
                    reports[entry.name] = _onboard(entry, time_limit, save, profiles)
        if as_json:
            from .envelope import emit

            emit("list", [_row(e, reports.get(e.name)) for e in entries], notices)
            return
        for notice in notices:
            print(f"turnspec: {notice}", file=sys.stderr)
        if entries:
            (_print_deep if deep else _print_table)(entries, reports)


def scan(
    cache: Optional[Path] = typer.Option(None, "--cache"),
    gguf_dir: Optional[list[Path]] = typer.Option(None, "--gguf-dir"),
    as_json: bool = typer.Option(False, "--json"),
    save: bool = typer.Option(False, "--save"),
    out: Path = typer.Option(_PROFILES, "--out", "--profiles"),
    time_limit: float = typer.Option(2.0, "--time-limit"),
) -> None:
    """Renamed: `turnspec list --deep`."""
    print("turnspec: `scan` is now `turnspec list --deep`", file=sys.stderr)
    list_models(pattern=None, cache=cache, gguf_dir=gguf_dir, as_json=as_json, quick=False, deep=True, save=save,
                profiles=out, time_limit=time_limit)


def _onboard(entry: Any, time_limit: float, save: bool, profiles: Path) -> Any:
    from ..errors import TurnspecError
    from ..onboard.probe import Report, onboard_model
    from ..onboard.profile import save_profile

    kwargs = {"name": entry.repo_id, "origin": "hf-cache"} if entry.path.is_dir() and entry.repo_id else {}
    try:
        report = onboard_model(entry.path, time_limit_s=time_limit, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one model's failure is a row, not the end of the listing
        report = Report(model=entry.name, error=f"{type(exc).__name__}: {exc}")
    if save:
        try:
            path, _ = save_profile(report, profiles)
            entry.profile = path
        except TurnspecError as exc:
            report.notices.append(str(exc))
    return report


def _row(entry: Any, report: Any) -> dict[str, Any]:
    from ..onboard.report import summary_row

    row = entry.as_dict()
    if report is not None:
        row["onboarding"] = {**summary_row(report), "findings": report.findings,
                             "template_sha256": report.template_sha256, "source": report.source,
                             "notices": report.notices}
    return row


class _progress:
    """A transient progress bar on stderr while models are checked (only on a terminal, only when asked)."""

    def __init__(self, total: int, show: bool):
        self.total, self.show = total, show and sys.stderr.isatty() and total > 1
        self._progress: Any = None

    def __enter__(self) -> Any:
        if not self.show:
            return lambda name: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        task = self._progress.add_task("checking", total=self.total)
        started = [False]

        def step(name: str) -> None:
            if started[0]:
                self._progress.advance(task)
            started[0] = True
            self._progress.update(task, description=f"checking {name}")

        return step

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()


def _table(title: str, columns: list[str], names: list[str]) -> Any:
    """Names never wrap (they are what users copy into run, serve and rm); the other cells fold."""
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", box=None, pad_edge=False, header_style="bold")
    for col in columns:
        if col == "NAME":
            table.add_column(col, no_wrap=True, min_width=min(max(map(len, names), default=4), 72))
        else:
            table.add_column(col, overflow="fold")
    return table


def _display_name(entry: Any) -> str:
    home = str(Path.home())
    return "~" + entry.name[len(home):] if entry.source == "gguf-dir" and entry.name.startswith(home) else entry.name


def _files_cell(entry: Any) -> str:
    return entry.files + (f" ({entry.files_detail})" if entry.files_detail and entry.files != "complete" else "")


def _print_table(entries: list[Any], _reports: dict[str, Any]) -> None:
    from ..catalog.files import human_size
    from ..readiness import readiness_summary

    table = _table("", ["NAME", "FORMAT", "SIZE", "ENGINE", "CHAT", "FILES"], [_display_name(e) for e in entries])
    for e in entries:
        chat = "not checked (--quick)" if e.readiness is None and e.path is not None else (
            "unknown until downloaded" if e.readiness is None else readiness_summary(e.readiness))
        engine = ", ".join(e.engines) if e.engines else ("-" if e.format == "tokenizer-only" else "none installed")
        table.add_row(_display_name(e), e.format, human_size(e.size_bytes), engine, chat, _files_cell(e))
    _console().print(table)


def _print_deep(entries: list[Any], reports: dict[str, Any]) -> None:
    from ..onboard.report import summary_row

    table = _table("turnspec list --deep: chat model coverage",
                   ["NAME", "FILES", "PROMPT", "SYSTEM", "TOOLS", "REASONING", "HISTORY", "STOPS", "WARNINGS"],
                   [_display_name(e) for e in entries])
    onboarded = failed = 0
    for e in entries:
        report = reports.get(e.name)
        if report is None:
            table.add_row(_display_name(e), _files_cell(e), "-", "-", "-", "-", "-", "-", "not onboarded")
            continue
        onboarded += 1
        s = summary_row(report)
        error = " ".join(str(s["error"] or "").split())
        failed += bool(error)
        warnings = str(s["warnings"]) if not error else f"{s['warnings']}; ERROR: {error[:90]}{'…' if len(error) > 90 else ''}"
        table.add_row(_display_name(e), _files_cell(e), s["format"], str(s["system"]), str(s["tools"]),
                      str(s["reasoning"]), str(s["history"]), str(s["stops"]), warnings)
    console = _console()
    console.print(table)
    console.print(f"{onboarded} models onboarded, {failed} with errors", markup=False)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, width=max(Console().width, 160))
