"""Find a model's chat configuration from whatever the user names: a folder, a .gguf file, or a cached repo id."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelNotFoundError, ModelSourceError
from .folder import CHAT_FILES, load_folder
from .model_files import ModelFiles

__all__ = ["ModelFiles", "resolve"]


def resolve(source: str | Path, *, cache_dir: Path | None = None, download: bool = False) -> ModelFiles:
    """Turn `source` into ModelFiles; offline unless `download` is set (and then only the small tokenizer files)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_dir(path)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            from .gguf import load_gguf

            return load_gguf(path)
        if path.suffix.lower() in (".jinja", ".j2"):
            return ModelFiles(name=path.stem, origin="template", path=path,
                              templates={"default": path.read_text(encoding="utf-8")},
                              provenance={"template": path.name})
        raise ModelSourceError(f"{path}: not a model; pass a model folder, a .gguf file or a cached repo id")
    from .hf_cache import cached_gguf_path, download_tokenizer_files, find_cached_snapshot, looks_like_repo_id

    text = str(source)
    gguf = cached_gguf_path(text, cache_dir=cache_dir)
    if gguf is not None:
        from .gguf import load_gguf

        return load_gguf(gguf)
    if looks_like_repo_id(text):
        snapshot = find_cached_snapshot(text, cache_dir=cache_dir)
        if snapshot is None and download:
            snapshot = download_tokenizer_files(text, cache_dir=cache_dir)
        if snapshot is None:
            raise ModelNotFoundError(
                f"{text}: not in the local Hugging Face cache; run `turnspec pull {text}` (`--tokenizer-only` fetches "
                "only its chat files), or pass a folder or .gguf path"
            )
        return _load_dir(Path(snapshot), name=text, origin="hf-cache")
    raise ModelNotFoundError(f"{text}: no such file or folder, and not a repo id (org/name) or a cached "
                             "org/name/file.gguf; check the path")


def _load_dir(folder: Path, name: str | None = None, origin: str = "folder") -> ModelFiles:
    """A folder with HF chat files loads as such; a folder holding only one GGUF loads that GGUF."""
    if not any((folder / f).is_file() for f in CHAT_FILES):
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) == 1:
            from .gguf import load_gguf

            return load_gguf(ggufs[0])
        if len(ggufs) > 1:
            names = ", ".join(g.name for g in ggufs[:5])
            raise ModelSourceError(f"{folder}: holds several GGUF files ({names}); pass one of them")
        raise ModelSourceError(
            f"{folder}: no tokenizer_config.json, chat_template.jinja or .gguf file; is this a model folder?"
        )
    return load_folder(folder, name=name, origin=origin)
