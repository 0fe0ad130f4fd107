"""`turnspec pull`: a model from the Hugging Face Hub into the standard HF cache, then onboarded (profile saved)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .common import fail_cleanly


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)


def pull(
    name: str = typer.Argument(..., help="org/name (a model repo), or org/name/file.gguf (one GGUF, all its shards)."),
    revision: str = typer.Option("main", "--revision", help="Branch, tag or commit to pull."),
    include: Optional[list[str]] = typer.Option(None, "--include", help="Only files matching this glob (repeatable); the chat files always come too."),
    tokenizer_only: bool = typer.Option(False, "--tokenizer-only", help="Only the chat template and tokenizer files (enough for render, onboard, show)."),
    force: bool = typer.Option(False, "--force", help="Pull even a model without a chat template (a base model)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hugging Face hub cache folder (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."),
    profiles: Path = typer.Option(Path("config/models"), "--profiles", help="Where the onboarding profile is saved."),
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope instead of the summary (no progress bar)."),
) -> None:
    """Download a model into the Hugging Face cache (resumable), checking first that it can chat; then onboard it."""
    from ..hub.pull import plan_pull
    from ..hub.pull import pull as run_pull

    with fail_cleanly("pull", as_json):
        plan = plan_pull(name, revision=revision, include=include or (), tokenizer_only=tokenizer_only)
        bar = _Bar(show=not as_json and sys.stderr.isatty())
        try:
            result = run_pull(plan, cache_dir=cache, force=force, progress=bar)
        except KeyboardInterrupt:
            bar.stop()
            print(f"turnspec: pull interrupted; `turnspec pull {name}` resumes it where it stopped", file=sys.stderr)
            raise
        finally:
            bar.stop()
        report, profile, notices = _onboard(result, profiles)
        notices = result.notices + notices
        if as_json:
            from ..onboard.report import summary_row
            from .envelope import emit

            emit("pull", {**result.as_dict(), "profile": str(profile) if profile else None,
                          "onboarding": summary_row(report) if report is not None else None}, notices)
            return
        _print_summary(result, report, profile, notices)


def _onboard(result: Any, profiles: Path) -> tuple[Any, Path | None, list[str]]:
    """Probe the pulled model and save its profile; a model that fails to onboard is still pulled (a notice)."""
    from ..errors import TurnspecError
    from ..onboard.probe import onboard_model
    from ..onboard.profile import save_profile

    kwargs = {"name": result.repo_id, "origin": "hf-cache"} if result.path.is_dir() else {}
    report = onboard_model(result.path, **kwargs)
    notices = []
    if report.error:
        notices.append(f"onboarding: {report.error}")
    try:
        profile, saved = save_profile(report, profiles)
    except TurnspecError as exc:
        return report, None, notices + [str(exc)]
    return report, profile, notices + saved


def _print_summary(result: Any, report: Any, profile: Path | None, notices: list[str]) -> None:
    from ..catalog.files import human_size
    from ..onboard.report import summary_row

    speed = f", {human_size(int(result.bytes_per_s))}/s" if result.bytes_per_s else ""
    resumed = f"; {human_size(result.resumed_bytes)} were already there" if result.resumed_bytes else ""
    fetched = (f"{human_size(result.downloaded_bytes)} in {result.seconds:.1f} s{speed}{resumed}"
               if result.downloaded_bytes else "already up to date")
    print(f"pulled {result.name} ({len(result.files)} files, {human_size(result.total_bytes)}): {fetched}")
    print(f"  path:    {result.path}")
    if report is not None and not report.error:
        s = summary_row(report)
        warnings = f" · {s['warnings']} warning(s)" if s["warnings"] else ""
        print(f"  chat:    stops {s['stops']} · system {s['system']} · tools {s['tools']} · reasoning "
              f"{s['reasoning']}{warnings}")
    if profile is not None:
        print(f"  profile: {profile}")
    print(f"  run it:  turnspec run {result.name}")
    for notice in notices:
        print(f"turnspec: {' '.join(str(notice).split())}", file=sys.stderr)


class _Bar:
    """The download bar on stderr (a terminal only): bytes, speed, time left; resumed bytes count as done."""

    def __init__(self, show: bool):
        self.show = show
        self._progress: Any = None
        self._task: Any = None

    def start(self, total: int, done: int) -> None:
        if not self.show:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                  transient=True)
        self._progress.start()
        self._task = self._progress.add_task("pulling", total=total or None, completed=done)

    def file(self, path: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=path)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
