"""Model profiles: the onboarding findings saved as YAML, with the user's own notes and pinned overrides.

A profile lives at `<profiles dir>/<org>--<name>.yaml` (default dir: `config/models` under the current
directory). `turnspec onboard MODEL --save` writes it; re-saving replaces `findings`, `template_sha256`,
`source` and `onboarded`, and keeps everything else the user wrote: `notes`, `pinned`, other keys, comments.
Writes are atomic (a temporary file in the same folder, then `os.replace`), so a crash never leaves half a file.

`pinned` holds overrides the user wants applied whenever the model runs (`turnspec run`/`serve` call
`apply_pins`):

    pinned:
      stops:
        extra_tokens: ["<|eot_id|>"]   # also end the turn on these tokens (looked up in the vocabulary)
        extra_strings: ["\\nUser:"]     # and on these strings
      system_mode: merge               # merge | error: what to do when the template rejects a system message
      template_kwargs:                 # default template variables, e.g. to turn reasoning off
        enable_thinking: false
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from ..errors import TurnspecError

DEFAULT_PROFILES_DIR = Path("config") / "models"
PIN_KEYS = ("stops", "system_mode", "template_kwargs")
SYSTEM_MODES = ("merge", "error")

HEADER = """\
turnspec model profile, written by `turnspec onboard MODEL --save`.
Re-running --save rewrites `findings`, `template_sha256`, `source` and `onboarded`; it keeps `notes`,
`pinned`, any other key and these comments.
Pin overrides under `pinned:`; turnspec run/serve apply them every time the model is loaded:
  pinned:
    stops:
      extra_tokens: ["<|eot_id|>"]    # also end the turn on these tokens
      extra_strings: ["\\nUser:"]      # and on these strings
    system_mode: merge                # merge | error (when the template rejects a system message)
    template_kwargs: {enable_thinking: false}   # default template variables
"""
NOTES_PLACEHOLDER = "Your notes about this model. turnspec keeps this section when it re-saves the profile.\n"


# ------------------------------------------------------------------------------------------------- file names
def profile_filename(name: str) -> str:
    """`org/name` -> `org--name.yaml`; any other model name is sanitized to a safe file name."""
    parts = [re.sub(r"[^A-Za-z0-9._-]+", "-", part).strip("-.") for part in str(name).split("/")]
    stem = "--".join(p for p in parts if p) or "model"
    return f"{stem}.yaml"


def _model_name(model: Any) -> str:
    return model.name if hasattr(model, "name") and not isinstance(model, (str, Path)) else str(model)


def profile_path(model: Any, profiles_dir: str | Path | None = None) -> Path:
    """Where the profile of `model` (a ModelSpec, a Report, or a model name / repo id) lives."""
    if isinstance(model, Path) and model.suffix in (".yaml", ".yml"):
        return model
    name = getattr(model, "model", None) if not isinstance(model, (str, Path)) and hasattr(model, "findings") else None
    return Path(profiles_dir or DEFAULT_PROFILES_DIR) / profile_filename(name or _model_name(model))


# ------------------------------------------------------------------------------------------------- YAML
def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 110
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    return yaml


def read_profile(path: Path) -> Any:
    """Parse a profile file (round-trip: comments kept); a broken file is a one-line error naming it."""
    from ruamel.yaml import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TurnspecError(f"{path}: cannot read the profile ({exc.strerror or exc})") from None
    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise TurnspecError(f"{path}: invalid YAML{where} ({problem}); fix it or delete the file") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TurnspecError(f"{path}: a profile must be a YAML mapping (model, findings, pinned, notes...)")
    return data


def load_profile(model: Any, profiles_dir: str | Path | None = None) -> dict | None:
    """The saved profile of `model` (a ModelSpec or a model name; or a path to a .yaml file), or None if there is none."""
    path = profile_path(model, profiles_dir)
    if not path.is_file():
        return None
    return read_profile(path)


def _plain_for_yaml(value: Any) -> Any:
    """Strings with newlines or edge whitespace become double-quoted scalars: exact, and readable as escapes."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[str(k)] = _plain_for_yaml(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain_for_yaml(v) for v in value]
    if isinstance(value, str) and (value != value.strip() or any(c in value for c in "\n\r\t") or
                                   any(not c.isprintable() for c in value)):
        return DoubleQuotedScalarString(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _new_document(report: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import LiteralScalarString

    doc = CommentedMap()
    doc["model"] = report.model
    doc["source"] = _plain_for_yaml(report.source)
    doc["template_sha256"] = report.template_sha256
    doc["onboarded"] = ""
    doc["pinned"] = CommentedMap()
    doc["notes"] = LiteralScalarString(NOTES_PLACEHOLDER)
    doc["findings"] = CommentedMap()
    doc.yaml_set_start_comment(HEADER)
    doc.yaml_set_comment_before_after_key("pinned", before="\nYour overrides (see the header); kept on re-save.")
    doc.yaml_set_comment_before_after_key("notes", before="\nYour notes; kept on re-save.")
    doc.yaml_set_comment_before_after_key("findings", before="\nWhat turnspec found by rendering probe conversations "
                                                              "(rewritten on every --save).")
    return doc


def save_profile(report: Any, profiles_dir: str | Path | None = None) -> tuple[Path, list[str]]:
    """Write (or update) the profile for `report`; return its path and notices (e.g. the template changed).

    Keeps the user's `notes`, `pinned`, other keys and comments of an existing profile.
    """
    from .. import __version__
    from .probe import timestamp

    path = profile_path(report, profiles_dir)
    notices: list[str] = []
    doc = read_profile(path) if path.is_file() else None
    if doc is None:
        doc = _new_document(report)
    else:
        old = doc.get("template_sha256")
        if old and report.template_sha256 and str(old) != report.template_sha256:
            notices.append(f"the chat template changed since the saved profile (sha256 {str(old)[:12]}… → "
                           f"{report.template_sha256[:12]}…): findings updated; check your pinned overrides")
        doc.setdefault("pinned", {})
        doc.setdefault("notes", "")
    doc["model"] = report.model
    doc["source"] = _plain_for_yaml(report.source)
    doc["template_sha256"] = report.template_sha256
    doc["onboarded"] = f"{timestamp()} by turnspec {__version__}"
    if report.error:
        doc["partial"] = _plain_for_yaml(report.error)
        if "findings" in doc:  # keep `partial` next to the top-level facts, before the user's sections
            _move_before(doc, "partial", "pinned")
    elif "partial" in doc:
        del doc["partial"]
    doc["findings"] = _plain_for_yaml(report.findings)
    buffer = StringIO()
    _yaml().dump(doc, buffer)
    write_atomic(path, buffer.getvalue())
    return path, notices


def _move_before(doc: Any, key: str, anchor: str) -> None:
    keys = list(doc.keys())
    if key in keys and anchor in keys and keys.index(key) > keys.index(anchor):
        value = doc.pop(key)
        doc.insert(keys.index(anchor), key, value)


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and `os.replace`: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ------------------------------------------------------------------------------------------------- pins
@dataclass
class Pins:
    """The overrides a profile pins, after `apply_pins` applied the stops to the spec.

    `system_mode` and `template_kwargs` are for the caller to pass on (chat_session.ChatSession(system_mode=...,
    template_kwargs=...)); `notices` say what was applied or ignored (show them with --verbose).
    """

    stop_tokens: tuple[str, ...] = ()
    stop_strings: tuple[str, ...] = ()
    system_mode: str | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TurnspecError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def apply_pins(spec: Any, profile: dict | None) -> Pins:
    """Apply a profile's pinned overrides to `spec` (extra stops extend `spec.stops`); return all pins.

    Call after loading the spec and before generating: `apply_pins(spec, load_profile(spec, profiles_dir))`.
    Applying twice is harmless. A profile without `pinned` (or None) changes nothing.
    """
    pins = Pins()
    if not profile:
        return pins
    where = f"the profile of {spec.name}"
    saved_sha = profile.get("template_sha256")
    try:
        current_sha = spec.template_sha256
    except TurnspecError:
        current_sha = None
    if saved_sha and current_sha and str(saved_sha) != current_sha:
        pins.notices.append(f"{where} was made for another chat template (sha256 {str(saved_sha)[:12]}…, now "
                            f"{current_sha[:12]}…): re-run `turnspec onboard {spec.name} --save`")
    pinned = profile.get("pinned") or {}
    if not isinstance(pinned, dict):
        raise TurnspecError(f"{where}: `pinned` must be a mapping (see the comment at the top of the profile)")
    for key in pinned:
        if key not in PIN_KEYS:
            pins.notices.append(f"{where}: pinned key {key!r} is not applied by turnspec (known: {', '.join(PIN_KEYS)})")

    stops = pinned.get("stops") or {}
    if not isinstance(stops, dict):
        raise TurnspecError(f"{where}: pinned.stops must be a mapping with extra_tokens / extra_strings")
    tokens = _string_list(stops.get("extra_tokens"), f"{where}: pinned.stops.extra_tokens")
    strings = list(_string_list(stops.get("extra_strings"), f"{where}: pinned.stops.extra_strings"))
    with_ids: list[tuple[str, int | None]] = []
    for tok in tokens:
        tid = spec.token_id(tok)
        if tid is None:
            strings.append(tok)
            pins.notices.append(f"{where}: pinned stop token {tok!r} is not in the vocabulary; stopping on it as text")
        else:
            with_ids.append((tok, tid))
    if with_ids or strings:
        spec.stops = spec.stops.with_extra(with_ids, strings)
        pins.notices.append(f"{where}: pinned stops applied: {', '.join([t for t, _ in with_ids] + strings)}")
    pins.stop_tokens, pins.stop_strings = tuple(t for t, _ in with_ids), tuple(strings)

    mode = pinned.get("system_mode")
    if mode is not None:
        if mode not in SYSTEM_MODES:
            raise TurnspecError(f"{where}: pinned.system_mode must be one of {', '.join(SYSTEM_MODES)}, not {mode!r}")
        pins.system_mode = str(mode)
    kwargs = pinned.get("template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise TurnspecError(f"{where}: pinned.template_kwargs must be a mapping of template variables")
    pins.template_kwargs = {str(k): _to_plain(v) for k, v in kwargs.items()}
    return pins


def _to_plain(value: Any) -> Any:
    """ruamel's round-trip types (CommentedMap, ScalarFloat...) as plain Python values for templates."""
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value
