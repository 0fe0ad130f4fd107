"""One file from the Hub into the standard HF cache, resumably, and only inside it.

huggingface_hub (2.x) downloads into a temporary file unique to the process and deletes it when the download
fails, so an interrupted download (Ctrl-C, a crash, a network outage longer than its retries) starts over. A
multi-GB model should not. So turnspec fetches the blob itself into the cache's own partial-file name,
`blobs/<etag>.incomplete` (the name huggingface_hub 0.x resumed from), continues it with an HTTP range request
next time, checks it against its etag (sha256 for LFS files, the git blob id for the rest), moves it to
`blobs/<etag>` and links it into `snapshots/<commit>/<path>` as huggingface_hub does (a relative symlink). Files
the Hub serves through Xet are fetched by huggingface_hub's `xet_get` into the same partial file (hf_xet keeps its
own chunk cache) and checked the same way.

Everything that names a path comes from the server: the ETag (the blob's name), the commit and the file paths.
A mirror, a proxy or plain http could answer `ETag: "../../x"`, so each is checked before it touches the disk:
ETags must be content hashes (and every blob is verified against its hash), commits git hashes, file paths
relative paths inside the snapshot. huggingface_hub's `hf_hub_download` is not used for the linking step: it asks
the server for the ETag again and writes where that answer says.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path, PureWindowsPath
from typing import Any, Callable
from urllib.parse import urlparse

from ..catalog.pending import INCOMPLETE
from ..errors import DownloadError
from ..sources.hub_errors import hub_endpoint, hub_error
from .hashes import SHA256, checked_commit, is_content_hash
from .remote import file_url, hub_headers


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
    from huggingface_hub.file_download import get_hf_file_metadata

    storage = cache_root / ("models--" + repo_id.replace("/", "--"))
    pointer = snapshot_path(storage, commit, path, repo_id)
    if pointer.exists():
        return pointer
    endpoint = hub_endpoint()
    try:
        meta = get_hf_file_metadata(file_url(repo_id, path, commit), headers=hub_headers(), endpoint=endpoint)
        etag = checked_etag(meta.etag, repo_id, path)
        blob = _fetch_blob(storage, cache_root, path, meta, etag, on_bytes, f"{repo_id}/{path}")
        _link(blob, pointer)
        return pointer
    except DownloadError:
        raise
    except Exception as exc:  # noqa: BLE001 - HTTP, network, disk: one line; the partial blob stays for next time
        raise hub_error(exc, repo_id, f"downloading {path}", filename=path) from None


def checked_etag(etag: Any, repo_id: str, path: str) -> str:
    """The file's ETag, if it is a content hash (sha256 for LFS files, the git blob sha1 otherwise): it names the
    blob in the cache and is what the bytes are checked against."""
    if not etag:
        raise DownloadError(f"{repo_id}/{path}: the Hub sent no ETag for it, so it cannot be stored in the cache")
    if not is_content_hash(etag):
        raise DownloadError(f"{repo_id}/{path}: the Hub at {hub_endpoint()} sent the ETag {str(etag)[:80]!r}, not a "
                            "sha256 or git hash of the file; refusing it (check HF_ENDPOINT and proxy settings)")
    return etag


def snapshot_path(storage: Path, commit: str, path: str, repo_id: str) -> Path:
    """`storage/snapshots/<commit>/<path>` for a git-hash commit and a relative path that stays inside it."""
    checked_commit(commit, repo_id)
    parts = path.split("/")
    if (not path or "\\" in path or "\0" in path or PureWindowsPath(path).drive or path.startswith("/")
            or any(p in ("", ".", "..") for p in parts)):
        raise DownloadError(f"{repo_id}: the Hub at {hub_endpoint()} lists a file {path[:120]!r} whose path leaves "
                            "the model's folder; refusing it (check HF_ENDPOINT and proxy settings)")
    snapshots = storage / "snapshots"
    pointer = snapshots / commit / path
    if Path(os.path.abspath(snapshots)) not in Path(os.path.abspath(pointer)).parents:  # belt and braces
        raise DownloadError(f"{repo_id}: {path[:120]!r} is not a path inside the model's folder; refusing it")
    return pointer


def _xet_available() -> bool:
    try:
        from huggingface_hub.utils import is_xet_available

        return bool(is_xet_available())
    except ImportError:
        return False


def _fetch_blob(storage: Path, cache_root: Path, path: str, meta: Any, etag: str,
                on_bytes: Callable[[int], None], name: str) -> Path:
    """`blobs/<etag>`, continued from `blobs/<etag>.incomplete` when an earlier pull stopped midway. `etag` is a
    checked content hash, so both names (and the lock's) stay in the cache."""
    from huggingface_hub.utils import WeakFileLock

    blob = storage / "blobs" / etag
    if blob.exists():
        return blob
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock = cache_root / ".locks" / storage.name / f"{etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(blob.name + INCOMPLETE)
    with WeakFileLock(str(lock)):
        if blob.exists():  # another pull finished it while this one waited
            return blob
        headers = hub_headers()
        if meta.xet_file_data is not None and _xet_available():
            from huggingface_hub.file_download import xet_get

            xet_get(incomplete_path=partial, xet_file_data=meta.xet_file_data, headers=headers,
                    expected_size=meta.size, displayed_filename=path, tqdm_class=progress_class(on_bytes))
        else:
            _http_blob(partial, path, meta, headers, on_bytes)
        _verify(partial, etag, name)
        os.replace(partial, blob)
    return blob


def _http_blob(partial: Path, path: str, meta: Any, headers: dict[str, str], on_bytes: Callable[[int], None]) -> None:
    from huggingface_hub.file_download import http_get

    done = partial.stat().st_size if partial.exists() else 0
    if meta.size is not None and done > meta.size:  # not this file's bytes: start over
        partial.unlink()
        done = 0
    if urlparse(meta.location).netloc != urlparse(hub_endpoint()).netloc:
        headers.pop("authorization", None)  # a signed CDN URL: the token stays with the Hub
    with open(partial, "ab") as out:
        http_get(meta.location, out, resume_size=done, headers=headers, expected_size=meta.size,
                 displayed_filename=path, tqdm_class=progress_class(on_bytes))


def _link(blob: Path, pointer: Path) -> None:
    """`snapshots/<commit>/<path>` -> `../../blobs/<etag>`, a relative symlink as huggingface_hub makes it (a copy
    where the file system has no symlinks)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink():  # a link left dangling by a removed blob
        pointer.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except FileExistsError:  # another pull linked it meanwhile
        pass
    except OSError:
        shutil.copyfile(blob, pointer)


def _verify(partial: Path, etag: str, name: str) -> None:
    """Check the finished bytes against the etag: a resumed file must be the file, not two halves of two files."""
    if SHA256.fullmatch(etag):
        digest = hashlib.sha256()
    else:  # checked_etag let only sha256 and git sha1 through
        digest = hashlib.sha1()
        digest.update(b"blob %d\0" % partial.stat().st_size)
    with open(partial, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    if digest.hexdigest() != etag:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{name}: the downloaded bytes do not match the Hub's checksum ({etag[:12]}…); the "
                            "partial file was deleted, pull again")
