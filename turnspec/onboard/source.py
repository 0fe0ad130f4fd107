"""Load a model for onboarding without giving up on the first broken file.

`turnspec.load` stops at the first problem, which is right for running a model. Onboarding is an investigation:
a malformed tokenizer_config.json or a missing template is itself the finding, and whatever else the model
folder holds (a chat_template.jinja beside the broken config, generation_config.json, tokenizer.json) still
tells the user something. So the error is kept as one line and the readable files are loaded anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelSourceError, NoChatTemplateError, TurnspecError
from ..sources import ModelFiles, resolve
from ..sources.folder import read_json, templates_from_config_value, token_content, tokenizer_loader
from ..sources.model_files import SPECIAL_TOKEN_ATTRIBUTES
from ..template import RenderLimits


@dataclass
class Loaded:
    """What could be loaded: a spec when a template was found, the raw files when they were readable, the error."""

    spec: Any = None  # ModelSpec | None
    files: ModelFiles | None = None
    error: str | None = None


def load_for_onboarding(model: str | Path, *, template: str | Path | None = None, cache_dir: Path | None = None,
                        limits: RenderLimits | None = None, name: str | None = None, origin: str | None = None) -> Loaded:
    """Load MODEL like `turnspec.load`; on a source error, salvage what is readable and keep the error as one line.

    `name`/`origin` override the model's name (scan passes the repo id for a cache snapshot folder).
    """
    from ..spec import ModelSpec, load

    try:
        if name is None:
            spec = load(model, template=template, cache_dir=cache_dir, limits=limits)
        else:
            files = _resolve_named(Path(model), name, origin or "folder")
            if template is not None:
                _override_template(files, template)
            spec = ModelSpec(files, limits=limits)
        return Loaded(spec, spec.files, None)
    except NoChatTemplateError as exc:
        files = _quiet(lambda: _resolve_named(Path(model), name, origin or "folder") if name else
                       resolve(model, cache_dir=cache_dir))
        return Loaded(None, files, str(exc))
    except ModelSourceError as exc:
        files = salvage(model, cache_dir=cache_dir, name=name, origin=origin)
        if files is not None and template is not None:
            _quiet(lambda: _override_template(files, template))
        spec = None
        if files is not None and files.templates:
            spec = _quiet(lambda: ModelSpec(files, limits=limits))
        return Loaded(spec, files, str(exc))


def _resolve_named(path: Path, name: str | None, origin: str) -> ModelFiles:
    files = resolve(path)
    if name is not None and path.is_dir():
        files.name, files.origin = name, origin
    return files


def _override_template(files: ModelFiles, template: str | Path) -> None:
    from ..spec import _read_template_arg

    files.templates = {"default": _read_template_arg(template)}
    files.provenance["template"] = str(template)


def _quiet(fn: Any) -> Any:
    try:
        return fn()
    except TurnspecError:
        return None


def model_folder(model: str | Path, cache_dir: Path | None = None) -> Path | None:
    """The folder MODEL names: a path, or the cached snapshot of a repo id (None for GGUF files and unknown names)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        return None
    from ..sources.hf_cache import find_cached_snapshot, looks_like_repo_id

    if looks_like_repo_id(str(model)):
        return find_cached_snapshot(str(model), cache_dir=cache_dir)
    return None


def salvage(model: str | Path, *, cache_dir: Path | None = None, name: str | None = None,
            origin: str | None = None) -> ModelFiles | None:
    """A model folder read file by file, skipping the files that do not parse (None when MODEL is not a folder)."""
    folder = model_folder(model, cache_dir)
    if folder is None:
        return None
    default_origin = "folder" if Path(model).expanduser().is_dir() else "hf-cache"
    skipped: list[str] = []

    def optional_json(fname: str) -> dict[str, Any]:
        path = folder / fname
        if not path.is_file():
            return {}
        try:
            return read_json(path)
        except ModelSourceError:
            skipped.append(fname)
            return {}

    tokenizer_config = optional_json("tokenizer_config.json")
    special_map = optional_json("special_tokens_map.json")
    special: dict[str, str] = {}
    for source in (tokenizer_config, special_map if "added_tokens_decoder" not in tokenizer_config else {}):
        for key in SPECIAL_TOKEN_ATTRIBUTES:
            tok = token_content(source.get(key))
            if tok is not None:
                special[key] = tok
    provenance: dict[str, str] = {}
    templates: dict[str, str] = {}
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        templates["default"] = jinja_file.read_text(encoding="utf-8", errors="replace")
        provenance["template"] = jinja_file.name
    elif "chat_template" in tokenizer_config:
        templates = _quiet(lambda: templates_from_config_value(tokenizer_config["chat_template"], "tokenizer_config.json")) or {}
        provenance["template"] = "tokenizer_config.json"
    else:
        chat_json = optional_json("chat_template.json")
        if "chat_template" in chat_json:
            templates = _quiet(lambda: templates_from_config_value(chat_json["chat_template"], "chat_template.json")) or {}
            provenance["template"] = "chat_template.json"
    tokenizer_file = folder / "tokenizer.json"

    build_tokenizer = tokenizer_loader(tokenizer_file)

    if skipped:
        provenance["skipped"] = ", ".join(skipped)
    add_bos = tokenizer_config.get("add_bos_token")
    return ModelFiles(
        name=name or (str(model) if default_origin == "hf-cache" else folder.name),
        origin=origin or default_origin,
        path=folder,
        templates=templates,
        special_tokens=special,
        generation_config=optional_json("generation_config.json"),
        tokenizer_config=tokenizer_config,
        config=optional_json("config.json"),
        tokenizer_factory=build_tokenizer if tokenizer_file.is_file() else None,
        provenance=provenance,
        add_bos_token=add_bos if isinstance(add_bos, bool) else None,
    )


__all__ = ["Loaded", "load_for_onboarding", "model_folder", "salvage"]
