"""Hugging Face caches on disk for tests: repos laid out as huggingface_hub lays them out, never the network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

COMMIT = "12fd25f77366fa6b3b4b768ec3050bf629380bac"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def add_cached_repo(cache: Path, repo_id: str, files: dict[str, Path | bytes], *, commit: str = COMMIT,
                    ref: str | None = "main") -> Path:
    """`blobs/<sha256>` (big files symlinked to the original, not copied), `snapshots/<commit>/<name>` -> blob,
    `refs/<ref>`; returns the snapshot folder."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, Path):
            blob = storage / "blobs" / sha256_of(content)
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                blob.symlink_to(content.resolve()) if content.stat().st_size > 1 << 20 else blob.write_bytes(
                    content.read_bytes())
        else:
            blob = storage / "blobs" / hashlib.sha256(content).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(content)
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    if ref is not None:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot
