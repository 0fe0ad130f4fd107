"""`turnspec rm`: remove a cached model or a saved profile, after saying what goes and asking."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import TurnspecError
from .common import fail_cleanly


def register(app: typer.Typer) -> None:
    app.command("rm")(rm)


def rm(
    name: str = typer.Argument(..., help="A cached repo id (org/name), a cached GGUF (org/name/file.gguf) or a profile's model name."),
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask."),
    profile: bool = typer.Option(False, "--profile", help="Remove the saved profile of NAME, not the model."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hugging Face hub cache folder (default: HF_HUB_CACHE...)."),
    profiles: Path = typer.Option(Path("config/models"), "--profiles", help="Profiles folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope; data says what was removed."),
) -> None:
    """Remove a model from the Hugging Face cache (with its lock files), or a saved profile. Asks first."""
    from ..catalog.remove import plan_removal, remove

    with fail_cleanly("rm", as_json):
        removal = plan_removal(name, cache_dir=cache, profiles_dir=profiles, profile=profile)
        if not force and not _confirm(f"Remove {removal.describe()}?"):
            raise TurnspecError(f"nothing removed: {name} is still there (answer y, or pass -f)")
        remove(removal)
        if as_json:
            from .envelope import emit

            emit("rm", removal.as_dict(), removal.notices)
            return
        print(f"removed {removal.describe()}")
        for notice in removal.notices:
            print(f"turnspec: {notice}", file=sys.stderr)


def _confirm(question: str) -> bool:
    """Ask on stderr (stdout stays the command's output, JSON included); only y/yes is a yes, end of input a no."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n") or not sys.stdin.isatty():  # a terminal echoed the user's Enter already
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")
