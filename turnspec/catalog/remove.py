"""`turnspec rm`: what a name removes, said before anything is deleted, then deleted.

A repo id removes the repo's whole cache folder (blobs, snapshots, refs, an unfinished pull) and its lock files
under `<cache>/.locks/`; `org/name/file.gguf` removes that one GGUF (all its shards) and the blobs no other file
of the repo still uses, or the whole repo when nothing else is left in it; a profile name removes the saved
profile. A repo's profile holds the user's notes and pins, so removing the repo keeps it (and says so).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, TurnspecError
from .files import human_size, shard_names


@dataclass
class Removal:
    """What `turnspec rm NAME` would delete."""

    kind: str  # "cached repo" | "cached file" | "profile"
    name: str
    paths: list[Path]
    size_bytes: int
    where: Path
    notices: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "profile":
            return f"the profile of {self.name} ({self.where})"
        what = "from the Hugging Face cache" if self.kind == "cached repo" else "(one GGUF) from the Hugging Face cache"
        return f"{self.name} {what} ({self.where}, {human_size(self.size_bytes)})"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "path": str(self.where), "size_bytes": self.size_bytes,
                "removed": [str(p) for p in self.paths]}


def plan_removal(name: str, *, cache_dir: Path | None = None, profiles_dir: Path | None = None,
                 profile: bool = False) -> Removal:
    """The Removal for NAME; NotFoundError when there is nothing of that name to remove."""
    from ..onboard.profile import profile_path
    from ..sources.hf_cache import hub_cache_dir, repo_storage, split_gguf_name

    saved = profile_path(name, profiles_dir)
    if profile:
        if not saved.is_file():
            raise NotFoundError(f"no saved profile for {name} in {saved.parent} (looked for {saved.name})")
        return Removal("profile", name, [saved], saved.stat().st_size, saved)
    gguf = split_gguf_name(name)
    if gguf is not None and repo_storage(gguf[0], cache_dir).is_dir():
        return _gguf_removal(name, gguf[0], gguf[1], hub_cache_dir(cache_dir))
    storage = repo_storage(name, cache_dir) if "/" in name and not Path(name).expanduser().exists() else None
    if storage is not None and storage.is_dir():
        return _repo_removal(name, storage, hub_cache_dir(cache_dir), saved)
    if saved.is_file():
        return Removal("profile", name, [saved], saved.stat().st_size, saved)
    if Path(name).expanduser().exists():
        raise TurnspecError(f"{name}: turnspec rm removes cached repos and saved profiles, not your own files; "
                            "delete it yourself")
    raise NotFoundError(f"{name}: no cached repo, cached GGUF or saved profile of that name in "
                        f"{hub_cache_dir(cache_dir)} or {saved.parent}; see `turnspec list`")


def _repo_removal(repo_id: str, storage: Path, root: Path, saved: Path | None) -> Removal:
    locks = root / ".locks" / storage.name
    removal = Removal("cached repo", repo_id, [storage] + ([locks] if locks.exists() else []), _du(storage), storage)
    if saved is not None and saved.is_file():
        removal.notices.append(f"its profile {saved} is kept (your notes and pins); remove it with "
                               f"`turnspec rm {repo_id} --profile`")
    return removal


def _gguf_removal(name: str, repo_id: str, filename: str, root: Path) -> Removal:
    """One GGUF (with its shards) out of a repo: its snapshot links, and the blobs nothing else links to."""
    storage = root / ("models--" + repo_id.replace("/", "--"))
    wanted = set(shard_names(filename))
    links: dict[Path, list[Path]] = {}  # blob -> snapshot entries pointing at it
    doomed: list[Path] = []
    kept = 0
    for snapshot in (storage / "snapshots").glob("*"):
        for entry in snapshot.rglob("*"):
            if entry.is_dir():
                continue
            blob = Path(os.path.abspath(entry.parent / os.readlink(entry))) if entry.is_symlink() else entry
            links.setdefault(blob, []).append(entry)
            if entry.relative_to(snapshot).as_posix() in wanted:
                doomed.append(entry)
            else:
                kept += 1
    if not doomed:
        raise NotFoundError(f"{name}: {repo_id} is cached but holds no {filename}; see `turnspec list {repo_id}`")
    if kept == 0:  # nothing else in the repo: remove it whole, lock files included
        removal = _repo_removal(repo_id, storage, root, None)
        removal.notices.append(f"{filename} was all {repo_id} held: the whole repo goes")
        return removal
    doomed_set = set(doomed)
    blobs = [b for b, entries in links.items() if b not in doomed_set and set(entries) <= doomed_set]
    locks = [root / ".locks" / storage.name / f"{b.name}.lock" for b in blobs]
    size = sum(b.stat().st_size for b in blobs if b.exists()) + sum(d.stat().st_size for d in doomed if not d.is_symlink())
    return Removal("cached file", name, doomed + blobs + [lock for lock in locks if lock.exists()], size, storage)


def remove(removal: Removal) -> None:
    """Delete what `removal` names; a failure names the path and leaves the rest for a second try."""
    for path in removal.paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise TurnspecError(f"{path}: cannot remove it ({exc.strerror or exc}); check its permissions") from None


def _du(folder: Path) -> int:
    """Bytes in `folder`, symlinks not followed (snapshot links point at blobs counted once)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                try:
                    total += p.stat().st_size
                except OSError:
                    pass
    return total
