"""A local Hugging Face-style model folder: tokenizer_config.json, chat_template.jinja, generation_config.json..."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelSourceError
from .model_files import SPECIAL_TOKEN_ATTRIBUTES, ModelFiles

CHAT_FILES = (
    "tokenizer_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "config.json",
)


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object, turning a corrupt file into a one-line error that names it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelSourceError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); fix or re-download the file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelSourceError(f"{path}: cannot read it ({exc}); check the file and its permissions") from None
    except RecursionError:
        raise ModelSourceError(f"{path}: invalid JSON (nested too deeply to parse); fix or re-download the file"
                               ) from None
    if not isinstance(data, dict):
        raise ModelSourceError(f"{path}: expected a JSON object, found {type(data).__name__}; fix or re-download it")
    return data


def _optional_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def token_content(value: Any) -> str | None:
    """A special token as written in configs: a string, or a serialized AddedToken dict with "content"."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def templates_from_config_value(value: Any, where: str) -> dict[str, str]:
    """`chat_template` as configs store it: a string, or a list of {name, template} (named templates)."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"default": value}
    if isinstance(value, list):
        out = {}
        for item in value:
            if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("template"), str)):
                raise ModelSourceError(f"{where}: chat_template list items must be {{name, template}} objects")
            out[item["name"]] = item["template"]
        return out
    raise ModelSourceError(f"{where}: chat_template must be a string or a list of {{name, template}}")


def _read_templates(folder: Path, tokenizer_config: dict[str, Any], provenance: dict[str, str]) -> dict[str, str]:
    """Template files take priority over tokenizer_config.json entries, as in transformers."""
    templates: dict[str, str] = {}
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        templates["default"] = jinja_file.read_text(encoding="utf-8")
        provenance["template"] = jinja_file.name
    extra_dir = folder / "additional_chat_templates"
    if extra_dir.is_dir():
        for f in sorted(extra_dir.glob("*.jinja")):
            templates[f.name.removesuffix(".jinja")] = f.read_text(encoding="utf-8")
            provenance.setdefault("template", f"{extra_dir.name}/")
    if templates:
        return templates
    if "chat_template" in tokenizer_config:
        provenance["template"] = "tokenizer_config.json"
        return templates_from_config_value(tokenizer_config["chat_template"], str(folder / "tokenizer_config.json"))
    json_file = folder / "chat_template.json"
    if json_file.is_file():
        provenance["template"] = json_file.name
        return templates_from_config_value(read_json(json_file).get("chat_template"), str(json_file))
    return {}


def load_folder(folder: Path, name: str | None = None, origin: str = "folder") -> ModelFiles:
    """Read a model folder's chat configuration; only tokenizer.json is loaded lazily (it can be tens of MB)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelSourceError(f"{folder}: not a folder; pass a model folder, a .gguf file or a cached repo id")
    provenance: dict[str, str] = {}
    tokenizer_config = _optional_json(folder / "tokenizer_config.json")
    special_map = _optional_json(folder / "special_tokens_map.json")
    special: dict[str, str] = {}
    for key in SPECIAL_TOKEN_ATTRIBUTES:
        tok = token_content(tokenizer_config.get(key))
        if tok is not None:
            special[key] = tok
    if "added_tokens_decoder" not in tokenizer_config:
        # Legacy layout: transformers merges special_tokens_map.json over the config in this case only.
        for key in SPECIAL_TOKEN_ATTRIBUTES:
            tok = token_content(special_map.get(key))
            if tok is not None:
                special[key] = tok
    templates = _read_templates(folder, tokenizer_config, provenance)
    tokenizer_file = folder / "tokenizer.json"

    build_tokenizer = tokenizer_loader(tokenizer_file)

    add_bos = tokenizer_config.get("add_bos_token")
    return ModelFiles(
        name=name or folder.name,
        origin=origin,
        path=folder,
        templates=templates,
        special_tokens=special,
        generation_config=_optional_json(folder / "generation_config.json"),
        tokenizer_config=tokenizer_config,
        config=_optional_json(folder / "config.json"),
        tokenizer_factory=build_tokenizer if tokenizer_file.is_file() else None,
        provenance=provenance,
        add_bos_token=add_bos if isinstance(add_bos, bool) else None,
    )


def tokenizer_loader(tokenizer_file: Path) -> Callable[[], Any]:
    """A loader for `tokenizer.json`, run only when ids are needed; a corrupt file is a one-line ModelSourceError."""

    def build_tokenizer() -> Any:
        from tokenizers import Tokenizer

        try:
            return Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception on parse errors
            raise ModelSourceError(f"{tokenizer_file}: cannot load the tokenizer ({exc}); re-download it") from None

    return build_tokenizer
