"""What an unfinished `turnspec pull` left in the cache, so `list` can show it and a new pull can resume it.

A pull writes `.turnspec-pull.json` into the repo's cache folder (`models--Org--Name/`) before downloading and
deletes it when every file is linked into the snapshot. It names each file with its size and blob id, which is
all `list` needs to tell "model.safetensors: 45% downloaded" from a blob name like `blobs/<sha256>.incomplete`.
huggingface_hub ignores the file (it reads only blobs/, refs/ and snapshots/), and `turnspec rm` removes it with
the repo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = ".turnspec-pull.json"
INCOMPLETE = ".incomplete"


@dataclass
class PendingPull:
    """A pull that has not finished: its repo, the commit it pulls and the files it fetches (size, blob id)."""

    repo_id: str
    commit: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str | None = None  # what the user pulled: "org/name" or "org/name/file.gguf"

    def progress(self, storage: Path) -> tuple[int, int, list[str]]:
        """(bytes on disk, bytes in total, files not finished) for this pull in the repo folder `storage`."""
        done = total = 0
        unfinished = []
        for path, meta in sorted(self.files.items()):
            size = int(meta.get("size") or 0)
            total += size
            blob = storage / "blobs" / str(meta.get("etag"))
            if blob.is_file():
                done += size
                continue
            unfinished.append(path)
            partial = blob.with_name(blob.name + INCOMPLETE)
            if partial.is_file():
                done += min(partial.stat().st_size, size)
        return done, total, unfinished

    def as_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "commit": self.commit, "name": self.name, "files": self.files}


def write_pending(storage: Path, pull: PendingPull) -> None:
    from ..onboard.profile import write_atomic

    write_atomic(storage / MANIFEST, json.dumps(pull.as_dict(), indent=1) + "\n")


def read_pending(storage: Path) -> PendingPull | None:
    """The unfinished pull recorded in `storage`, or None (also for an unreadable record: it is only a hint)."""
    try:
        data = json.loads((storage / MANIFEST).read_text(encoding="utf-8"))
        return PendingPull(repo_id=str(data["repo_id"]), commit=str(data["commit"]), files=dict(data["files"]),
                           name=data.get("name"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_pending(storage: Path) -> None:
    (storage / MANIFEST).unlink(missing_ok=True)
