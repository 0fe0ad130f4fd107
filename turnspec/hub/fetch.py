"""One file from the Hub into the standard HF cache, resumably.

huggingface_hub (2.x) downloads into a temporary file unique to the process and deletes it when the download
fails, so an interrupted download (Ctrl-C, a crash, a network outage longer than its retries) starts over. A
multi-GB model should not. So turnspec fetches the blob itself into the cache's own partial-file name,
`blobs/<etag>.incomplete` (the name huggingface_hub 0.x resumed from), continues it with an HTTP range request
next time, checks it against its etag (sha256 for LFS files, the git blob id for the rest), and moves it to
`blobs/<etag>`. Then `hf_hub_download` finds the blob and only links it into `snapshots/<commit>/` (and keeps the
lock files and layout exactly its own). Files the Hub serves through Xet go to huggingface_hub entirely: hf_xet
has its own chunk cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from ..catalog.pending import INCOMPLETE
from ..errors import DownloadError
from ..sources.hub_errors import hub_endpoint, hub_error
from .remote import LIBRARY, file_url, hub_headers

_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


def progress_class(on_bytes: Callable[[int], None]) -> type:
    """A tqdm stand-in that hands huggingface_hub's byte counts to `on_bytes` (turnspec draws its own bar)."""

    class _Ticks:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> "_Ticks":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def update(self, n: int | float | None = 1) -> None:
            on_bytes(int(n or 0))

        def update_transfer(self, n: int | float | None = 1) -> None:
            pass

        def close(self) -> None:
            pass

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        set_transfer_postfix_str = set_description = set_description_str = refresh = set_postfix_str

    return _Ticks


def fetch_file(repo_id: str, path: str, commit: str, cache_root: Path,
               on_bytes: Callable[[int], None] = lambda n: None) -> Path:
    """Download `path` of `repo_id` at `commit` into the cache, continuing a partial blob; return its snapshot path.

    `on_bytes` gets the bytes as they arrive (not those already on disk from an earlier pull).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.file_download import get_hf_file_metadata

    storage = cache_root / ("models--" + repo_id.replace("/", "--"))
    pointer = storage / "snapshots" / commit / path
    if pointer.exists():
        return pointer
    endpoint = hub_endpoint()
    try:
        meta = get_hf_file_metadata(file_url(repo_id, path, commit), headers=hub_headers(), endpoint=endpoint)
        if meta.xet_file_data is None or not _xet_available():
            _fetch_blob(storage, cache_root, path, meta, on_bytes)
        return Path(hf_hub_download(repo_id, path, revision=commit, cache_dir=str(cache_root), endpoint=endpoint,
                                    library_name=LIBRARY, tqdm_class=progress_class(on_bytes)))
    except DownloadError:
        raise
    except Exception as exc:  # noqa: BLE001 - HTTP, network, disk: one line; the partial blob stays for next time
        raise hub_error(exc, repo_id, f"downloading {path}", filename=path) from None


def _xet_available() -> bool:
    try:
        from huggingface_hub.utils import is_xet_available

        return bool(is_xet_available())
    except ImportError:
        return False


def _fetch_blob(storage: Path, cache_root: Path, path: str, meta: Any, on_bytes: Callable[[int], None]) -> None:
    """`blobs/<etag>`, continued from `blobs/<etag>.incomplete` when an earlier pull stopped midway."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock

    if not meta.etag:
        raise DownloadError(f"{path}: the Hub sent no ETag for it, so it cannot be stored in the cache")
    blob = storage / "blobs" / meta.etag
    if blob.exists():
        return
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock = cache_root / ".locks" / storage.name / f"{meta.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(blob.name + INCOMPLETE)
    with WeakFileLock(str(lock)):
        if blob.exists():  # another pull finished it while this one waited
            return
        done = partial.stat().st_size if partial.exists() else 0
        if meta.size is not None and done > meta.size:  # not this file's bytes: start over
            partial.unlink()
            done = 0
        headers = hub_headers()
        if urlparse(meta.location).netloc != urlparse(hub_endpoint()).netloc:
            headers.pop("authorization", None)  # a signed CDN URL: the token stays with the Hub
        with open(partial, "ab") as out:
            http_get(meta.location, out, resume_size=done, headers=headers, expected_size=meta.size,
                     displayed_filename=path, tqdm_class=progress_class(on_bytes))
        _verify(partial, meta.etag, path)
        os.replace(partial, blob)


def _verify(partial: Path, etag: str, path: str) -> None:
    """Check the finished bytes against the etag: a resumed file must be the file, not two halves of two files."""
    if _SHA256.fullmatch(etag):
        digest = hashlib.sha256()
    elif _GIT_SHA1.fullmatch(etag):
        digest = hashlib.sha1()
        digest.update(b"blob %d\0" % partial.stat().st_size)
    else:  # a mirror with other etags: nothing to check against
        return
    with open(partial, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    if digest.hexdigest() != etag:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{path}: the downloaded bytes do not match the Hub's checksum ({etag[:12]}…); the "
                            "partial file was deleted, pull again")
