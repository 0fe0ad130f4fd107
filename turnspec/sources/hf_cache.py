"""The Hugging Face hub cache as a model source: find a repo's snapshot offline, or fetch only its chat files.

huggingface_hub reads HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE into constants once, at import time. turnspec reads
them at call time instead (same precedence as huggingface_hub), so a changed environment is honoured, and looks the
snapshot up on disk itself: `snapshot_download(local_files_only=True)` (hub 1.x+) refuses a snapshot that holds
only some of the repo's files, which is exactly what `download_tokenizer_files` leaves behind.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelSourceError
from .folder import CHAT_FILES

__all__ = [
    "CachedModel",
    "cached_gguf_path",
    "download_tokenizer_files",
    "find_cached_snapshot",
    "hub_cache_dir",
    "hub_offline",
    "is_repo_id",
    "list_cached_models",
    "looks_like_repo_id",
    "repo_storage",
    "split_gguf_name",
]

# The small files that decide how a conversation is framed; never weights.
TOKENIZER_FILE_PATTERNS = [*CHAT_FILES, "additional_chat_templates/*.jinja"]
# The files a chat template can come from (config.json alone, as in many GGUF repos, does not count).
TEMPLATE_FILES = ("tokenizer_config.json", "chat_template.jinja", "chat_template.json")

_TRUE = {"1", "ON", "YES", "TRUE"}
_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
# The hub's naming rules for "org/name": letters, digits, - _ . ; no "--" or ".."; no leading/trailing - or .
_REPO_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")
# "org/name/path/in/repo.gguf": one GGUF file of a repo (what `turnspec pull` fetches and `run` accepts).
_GGUF_NAME = re.compile(rf"({_REPO_PART}/{_REPO_PART})/((?:[^/\\]+/)*[^/\\]+\.gguf)", re.IGNORECASE)


@dataclass(frozen=True)
class CachedModel:
    """One model repo in the hub cache, as `turnspec scan` lists it.

    `has_chat_files`: the snapshot holds a file a chat template can come from (tokenizer_config.json,
    chat_template.jinja/.json); `gguf_files`: every .gguf in the snapshot, subfolders included.
    """

    repo_id: str
    snapshot: Path
    has_chat_files: bool
    gguf_files: tuple[Path, ...]


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The hub cache folder: `cache_dir`, else HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME...

    Read from the environment now, not when huggingface_hub was imported.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not hub:
        home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
        hub = os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def is_repo_id(s: str) -> bool:
    """True for a name the Hub accepts as "org/name"."""
    return bool(_REPO_ID.fullmatch(s)) and "--" not in s and ".." not in s and all(len(p) <= 96 for p in s.split("/"))


def looks_like_repo_id(s: str) -> bool:
    """True for "org/name" that is not an existing path: a local folder of that name wins."""
    return is_repo_id(s) and not Path(s).expanduser().exists()


def split_gguf_name(text: str) -> tuple[str, str] | None:
    """("org/name", "dir/file.gguf") for "org/name/dir/file.gguf", else None (existing paths are never split)."""
    m = _GGUF_NAME.fullmatch(text)
    if m is None or ".." in m.group(2).split("/") or Path(text).expanduser().exists():
        return None
    return m.group(1), m.group(2)


def cached_gguf_path(text: str, *, cache_dir: Path | None = None) -> Path | None:
    """The cached file "org/name/file.gguf" names (at main, else the newest snapshot), or None; never the network."""
    parts = split_gguf_name(text)
    if parts is None:
        return None
    repo_id, filename = parts
    snapshot = find_cached_snapshot(repo_id, cache_dir=cache_dir) or _main_or_newest_snapshot(
        repo_storage(repo_id, cache_dir))
    if snapshot is None or not (snapshot / filename).is_file():
        return None
    return snapshot / filename


def repo_storage(repo_id: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder of a model repo: `<cache>/models--Org--Name` (it may not exist)."""
    return hub_cache_dir(cache_dir) / _repo_folder_name(repo_id)


def find_cached_snapshot(repo_id: str, *, cache_dir: Path | None = None, revision: str = "main") -> Path | None:
    """The snapshot folder of `repo_id` at `revision` (a branch, tag or commit hash), or None; never the network.

    Follows the hub's layout: `models--Org--Name/refs/<revision>` names a commit, `snapshots/<commit>/` holds files.
    """
    storage = repo_storage(repo_id, cache_dir)
    commit = revision if _COMMIT_HASH.fullmatch(revision) else _read_ref(storage, revision)
    if commit is None:
        return None
    snapshot = storage / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def list_cached_models(cache_dir: Path | None = None) -> list[CachedModel]:
    """Every model repo in the cache with a usable snapshot (main, else the newest), sorted by repo id."""
    root = hub_cache_dir(cache_dir)
    try:
        entries = sorted(root.iterdir())
    except OSError:  # no cache yet, or unreadable: nothing to list
        return []
    models = []
    for storage in entries:
        if not storage.name.startswith("models--") or not storage.is_dir():
            continue
        snapshot = _main_or_newest_snapshot(storage)
        if snapshot is None:
            continue
        models.append(
            CachedModel(
                repo_id=storage.name.removeprefix("models--").replace("--", "/"),
                snapshot=snapshot,
                has_chat_files=any((snapshot / name).is_file() for name in TEMPLATE_FILES),
                gguf_files=tuple(sorted(p for p in snapshot.rglob("*.gguf") if p.is_file())),
            )
        )
    return sorted(models, key=lambda m: m.repo_id.lower())


def download_tokenizer_files(repo_id: str, *, cache_dir: Path | None = None) -> Path:
    """Fetch only the chat/tokenizer files of `repo_id` into the hub cache (never weights); return the snapshot.

    Only called when the user asked to download. Offline (HF_HUB_OFFLINE), an already cached snapshot is returned
    as it is. Every failure becomes a one-line ModelSourceError.
    """
    if hub_offline():
        cached = find_cached_snapshot(repo_id, cache_dir=cache_dir)
        if cached is not None:
            return cached
        raise ModelSourceError(
            f"{repo_id}: not in the Hugging Face cache and HF_HUB_OFFLINE is set; unset it to download its tokenizer "
            "files, or pass a local folder or .gguf path"
        )
    from huggingface_hub import snapshot_download

    from .hub_errors import hub_endpoint, hub_error

    try:
        folder = snapshot_download(repo_id, cache_dir=str(hub_cache_dir(cache_dir)), endpoint=hub_endpoint(),
                                   allow_patterns=TOKENIZER_FILE_PATTERNS)
    except Exception as exc:  # HTTP, proxy, disk full, permissions...: one line, no traceback
        raise hub_error(exc, repo_id, "downloading its tokenizer files") from None
    return Path(folder)


def _repo_folder_name(repo_id: str) -> str:
    """`Org/Name` -> `models--Org--Name`, the hub's folder name for a model repo."""
    return "--".join(["models", *repo_id.split("/")])


def _read_ref(storage: Path, revision: str) -> str | None:
    """The commit hash a branch or tag points at, from `refs/<revision>`."""
    try:
        commit = (storage / "refs" / revision).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return commit or None


def _main_or_newest_snapshot(storage: Path) -> Path | None:
    """The snapshot `refs/main` names; for repos fetched only by commit or tag, the most recently written one."""
    main = _read_ref(storage, "main")
    if main is not None and (storage / "snapshots" / main).is_dir():
        return storage / "snapshots" / main
    try:
        snapshots = [p for p in (storage / "snapshots").iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(snapshots, key=lambda p: p.stat().st_mtime, default=None)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, or as huggingface_hub saw it at import."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if env.upper() in _TRUE:
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))
