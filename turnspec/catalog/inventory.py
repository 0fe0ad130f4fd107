"""Every model on this machine that turnspec can name: repos in the Hugging Face cache (scanned with
huggingface_hub's `scan_cache_dir`), each GGUF in them, and the GGUFs in the configured folders.

Each entry says what the user needs before running it: its format and size, the engines installed here that run
it, whether its files are complete (an interrupted pull, a missing shard), and, once `check_readiness` ran,
whether turnspec can chat with it correctly. Names are what `run`, `serve`, `pull` and `rm` accept:
`org/name`, `org/name/file.gguf`, or the path of a GGUF in a folder.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import NoChatTemplateError, NotFoundError, TurnspecError
from .files import human_size, is_first_shard_or_single, missing_files, shard_names, weights_format
from .pending import INCOMPLETE, PendingPull, read_pending

GGUF_DIRS_ENV = "TURNSPEC_GGUF_DIRS"


@dataclass
class ModelEntry:
    """One line of `turnspec list`."""

    name: str
    source: str  # "hf-cache" | "gguf-dir"
    format: str  # "safetensors" | "pytorch" | "gguf" | "tokenizer-only"
    path: Path | None  # what loads it: a snapshot folder or a .gguf file; None while nothing of it is complete
    size_bytes: int
    files: str  # "complete" | "partial" | "missing shards" | "no weights" | "broken"
    files_detail: str | None = None
    engines: list[str] = field(default_factory=list)
    repo_id: str | None = None
    commit: str | None = None
    readiness: dict[str, Any] | None = None
    model_name: str | None = None  # the spec's name (a GGUF's is org/file-stem), known after check_readiness
    profile: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "format": self.format,
                "path": str(self.path) if self.path else None, "size_bytes": self.size_bytes,
                "size": human_size(self.size_bytes), "files": self.files, "files_detail": self.files_detail,
                "engines": self.engines, "repo_id": self.repo_id, "commit": self.commit,
                "model_name": self.model_name, "profile": str(self.profile) if self.profile else None,
                "chat": self.readiness}


# --------------------------------------------------------------------------------------------- enumeration
def find_models(cache_dir: Path | None = None, gguf_dirs: Iterable[Path] = (), pattern: str | None = None) -> list[ModelEntry]:
    """Entries for the cache and the GGUF folders whose name matches `pattern` (a glob, or a substring)."""
    from ..sources.hf_cache import hub_cache_dir

    entries = cached_models(hub_cache_dir(cache_dir))
    for folder in gguf_dirs:
        entries += folder_ggufs(Path(folder).expanduser())
    if pattern:
        entries = [e for e in entries if name_matches(e.name, pattern)]
    return sorted(entries, key=lambda e: e.name.lower())


def gguf_dirs_from_env() -> list[Path]:
    """The folders in TURNSPEC_GGUF_DIRS (separated like PATH)."""
    return [Path(p).expanduser() for p in os.environ.get(GGUF_DIRS_ENV, "").split(os.pathsep) if p.strip()]


def name_matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatch(name.lower(), pattern.lower())
    return pattern.lower() in name.lower()


def cached_models(root: Path) -> list[ModelEntry]:
    if not root.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(root)
    except (OSError, ValueError) as exc:
        raise TurnspecError(f"{root}: cannot scan the Hugging Face cache ({exc})") from None
    entries: list[ModelEntry] = []
    scanned = set()
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        scanned.add(Path(repo.repo_path).resolve())
        revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        if revisions:
            entries += _repo_entries(repo.repo_id, Path(repo.repo_path), revisions[-1])
    for storage in sorted(root.glob("models--*")):
        if storage.is_dir() and storage.resolve() not in scanned:
            entries.append(_unscanned(storage))
    return entries


def _repo_entries(repo_id: str, storage: Path, revision: Any) -> list[ModelEntry]:
    """The repo's own line (unless it holds only GGUFs), and one line per GGUF (split GGUFs: one per model)."""
    snapshot = Path(revision.snapshot_path)
    files = {Path(f.file_path).relative_to(snapshot).as_posix(): f for f in revision.files}
    pending = read_pending(storage)
    unfinished = set(pending.progress(storage)[2]) if pending else set()
    ggufs = sorted(n for n in set(files) | {u for u in unfinished if u.lower().endswith(".gguf")}
                   if n.lower().endswith(".gguf"))
    rest = [n for n in files if not n.lower().endswith(".gguf")]
    rest_pending = sorted(u for u in unfinished if not u.lower().endswith(".gguf"))
    entries = []
    fmt = weights_format(rest + rest_pending)
    if fmt != "gguf" and (rest or not ggufs):
        entry = ModelEntry(name=repo_id, source="hf-cache", format=fmt, path=snapshot,
                           size_bytes=_blob_bytes(files[n] for n in rest), files="complete", repo_id=repo_id,
                           commit=snapshot.name)
        _judge(entry, snapshot, rest, rest_pending, pending, storage)
        if fmt == "tokenizer-only" and entry.files == "complete":
            entry.files, entry.files_detail = "no weights", f"chat files only; get the weights: turnspec pull {repo_id}"
        if not pending:
            _orphan_partials(entry, storage)
        entries.append(entry)
    for gguf in ggufs:
        if not is_first_shard_or_single(gguf):
            continue
        shards = shard_names(gguf)
        present = [s for s in shards if s in files]
        name = f"{repo_id}/{gguf}"
        entry = ModelEntry(name=name, source="hf-cache", format="gguf",
                           path=snapshot / gguf if gguf in files else None,
                           size_bytes=_blob_bytes(files[s] for s in present), files="complete", repo_id=repo_id,
                           commit=snapshot.name)
        _judge(entry, snapshot, present, [s for s in shards if s in unfinished], pending, storage,
               all_shards=shards)
        entries.append(entry)
    return entries


def _judge(entry: ModelEntry, snapshot: Path, present: list[str], unfinished: list[str],
           pending: PendingPull | None, storage: Path, all_shards: list[str] | None = None) -> None:
    """Set `files`: partial (an unfinished pull, with its progress), missing shards, or complete; and the engines."""
    from ..engines import engines_for_format

    entry.engines = engines_for_format(entry.format)
    if unfinished and pending is not None:
        done = total = 0
        for name in unfinished:
            meta = pending.files.get(name, {})
            total += int(meta.get("size") or 0)
            partial = storage / "blobs" / f"{meta.get('etag')}{INCOMPLETE}"
            done += partial.stat().st_size if partial.is_file() else 0
        entry.size_bytes += done
        pct = f"{100 * done / total:.0f}% of {human_size(total)}" if total else "started"
        entry.files = "partial"
        entry.files_detail = (f"{len(unfinished)} file(s) unfinished ({pct}); resume: turnspec pull "
                              f"{pending.name or entry.name}")
        return
    missing = [s for s in all_shards if s not in present] if all_shards else missing_files(snapshot, present)
    if missing:
        entry.files = "missing shards"
        entry.files_detail = f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}"


def _orphan_partials(entry: ModelEntry, storage: Path) -> None:
    """`.incomplete` blobs no turnspec pull recorded (another tool was interrupted): partial, file unknown."""
    partials = [p for p in (storage / "blobs").glob(f"*{INCOMPLETE}") if p.is_file()]
    if partials and entry.files == "complete":
        size = sum(p.stat().st_size for p in partials)
        entry.size_bytes += size
        entry.files = "partial"
        entry.files_detail = (f"{len(partials)} unfinished download(s) ({human_size(size)}); "
                              f"resume: turnspec pull {entry.repo_id}")


def _unscanned(storage: Path) -> ModelEntry:
    """A repo folder the hub's scanner refused: a pull with no finished file yet, or a broken cache entry."""
    repo_id = storage.name.removeprefix("models--").replace("--", "/")
    size = sum(p.stat().st_size for p in (storage / "blobs").glob("*") if p.is_file()) if (storage / "blobs").is_dir() else 0
    pending = read_pending(storage)
    if pending is not None:
        done, total, unfinished = pending.progress(storage)
        pct = f"{100 * done / total:.0f}% of {human_size(total)}" if total else "started"
        return ModelEntry(name=pending.name or repo_id, source="hf-cache", format=weights_format(pending.files),
                          path=None, size_bytes=size, files="partial", repo_id=repo_id, commit=pending.commit,
                          files_detail=f"{len(unfinished)} file(s) unfinished ({pct}); resume: turnspec pull "
                                       f"{pending.name or repo_id}")
    return ModelEntry(name=repo_id, source="hf-cache", format="tokenizer-only", path=None, size_bytes=size,
                      files="broken", repo_id=repo_id,
                      files_detail=f"no usable snapshot; pull it again (turnspec pull {repo_id}) or remove it "
                                   f"(turnspec rm {repo_id})")


def _blob_bytes(files: Iterable[Any]) -> int:
    seen: dict[Path, int] = {}
    for f in files:
        seen[Path(f.blob_path)] = int(f.size_on_disk)
    return sum(seen.values())


def folder_ggufs(folder: Path) -> list[ModelEntry]:
    """One entry per GGUF model (first shard) in `folder` and its subfolders."""
    from ..engines import engines_for_format

    if not folder.is_dir():
        raise NotFoundError(f"{folder}: not a folder (--gguf-dir and {GGUF_DIRS_ENV} take folders holding .gguf files)")
    found = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.suffix.lower() == ".gguf" and p.is_file()}
    entries = []
    for rel, path in sorted(found.items()):
        if not is_first_shard_or_single(rel):
            continue
        shards = shard_names(rel)
        present = [s for s in shards if s in found]
        entry = ModelEntry(name=str(path), source="gguf-dir", format="gguf", path=path,
                           size_bytes=sum(found[s].stat().st_size for s in present), files="complete",
                           engines=engines_for_format("gguf"))
        missing = [s for s in shards if s not in found]
        if missing:
            entry.files = "missing shards"
            entry.files_detail = f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}"
        entries.append(entry)
    return entries


# --------------------------------------------------------------------------------------------- chat readiness
def load_entry_spec(entry: ModelEntry) -> Any:
    """The ModelSpec of an entry, named as the user names it (a snapshot folder is named by its repo id)."""
    from ..sources import resolve
    from ..spec import ModelSpec

    if entry.path is None:
        raise TurnspecError(f"{entry.name}: not downloaded yet")
    files = resolve(entry.path)
    if entry.repo_id and entry.path.is_dir():
        files.name, files.origin = entry.repo_id, "hf-cache"
    return ModelSpec(files)


def check_readiness(entry: ModelEntry, profiles_dir: Path | None = None) -> ModelEntry:
    """Fill `readiness`, `model_name` and `profile` by loading the entry's template and tokenizer (no weights)."""
    from ..onboard.profile import profile_path
    from ..readiness import chat_readiness, no_template

    if entry.path is None:
        entry.readiness = None
        return entry
    try:
        spec = load_entry_spec(entry)
    except NoChatTemplateError:
        entry.readiness = no_template()
    except TurnspecError as exc:
        entry.readiness = {"ready": False, "template": None, "error": " ".join(str(exc).split())}
    else:
        entry.model_name = spec.name
        entry.readiness = chat_readiness(spec)
    path = profile_path(entry.model_name or entry.name, profiles_dir)
    entry.profile = path if path.is_file() else None
    return entry
