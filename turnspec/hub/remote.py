"""What a Hub repo holds, asked before anything is downloaded: its commit, its files with sizes and blob ids, and
for a GGUF the key/value header (read with HTTP range requests, a few MB, never the weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelSourceError
from ..sources.hub_errors import hub_endpoint, hub_error
from .hashes import checked_commit, is_content_hash

LIBRARY = "turnspec"
HEADER_FIRST_READ = 1 << 20  # most GGUF headers (vocabulary included) fit in a few MB
HEADER_MAX_READ = 64 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo at a commit. `etag` names its blob in the cache: the LFS sha256, else the git blob id."""

    path: str
    size: int | None
    etag: str | None


@dataclass
class RemoteRepo:
    repo_id: str
    revision: str
    commit: str
    files: dict[str, RemoteFile] = field(default_factory=dict)
    gated: Any = False


def hub_headers() -> dict[str, str]:
    """huggingface_hub's own headers: its user agent, and the token it is configured with (if any)."""
    from huggingface_hub.utils import build_hf_headers

    from .. import __version__

    return build_hf_headers(library_name=LIBRARY, library_version=__version__)


def repo_info(repo_id: str, revision: str = "main") -> RemoteRepo:
    """The repo at `revision` (branch, tag or commit), with every file's size and blob id."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=hub_endpoint(), library_name=LIBRARY).model_info(repo_id, revision=revision,
                                                                              files_metadata=True)
    except Exception as exc:  # noqa: BLE001 - every Hub failure becomes one line with its exit code
        raise hub_error(exc, repo_id, "asking the Hub about it", revision=revision) from None
    if not info.sha:
        raise ModelSourceError(f"{repo_id}: the Hub at {hub_endpoint()} did not say which commit {revision!r} is")
    commit = checked_commit(info.sha, repo_id)  # it names the snapshot folder
    files = {}
    for s in info.siblings or []:
        etag = s.lfs.sha256 if s.lfs is not None else s.blob_id
        # The listed blob id only names partial files (for `list` and resuming): a non-hash one names none.
        etag = etag if is_content_hash(etag) else None
        files[s.rfilename] = RemoteFile(s.rfilename, s.lfs.size if s.lfs is not None else s.size, etag)
    return RemoteRepo(repo_id, revision, commit, files, info.gated)


def file_url(repo_id: str, path: str, commit: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo_id, path, revision=commit, endpoint=hub_endpoint())


def read_range(url: str, start: int, end: int, repo_id: str) -> bytes:
    """Bytes start..end (inclusive) of a remote file, following the Hub's redirects."""
    from huggingface_hub.utils import get_session, hf_raise_for_status

    try:
        response = get_session().get(url, headers={**hub_headers(), "Range": f"bytes={start}-{end}"},
                                     follow_redirects=True)
        hf_raise_for_status(response)
    except Exception as exc:  # noqa: BLE001
        raise hub_error(exc, repo_id, "reading the GGUF header") from None
    data = response.content
    if response.status_code == 200:  # the server ignored the range: keep what was asked for
        data = data[start:end + 1]
    return data


def remote_gguf_header(repo: RemoteRepo, path: str) -> Any | None:
    """The GGUF's key/value header, read in growing ranges; None when it is larger than HEADER_MAX_READ."""
    from ..sources.gguf import GGUFHeaderIncomplete, gguf_keys_from_prefix

    url = file_url(repo.repo_id, path, repo.commit)
    size = repo.files[path].size
    name = f"{repo.repo_id}/{path}"
    data = b""
    want = HEADER_FIRST_READ
    while True:
        want = min(want, size) if size is not None else want
        if want > len(data):
            data += read_range(url, len(data), want - 1, repo.repo_id)
        try:
            return gguf_keys_from_prefix(data, name)
        except GGUFHeaderIncomplete:
            if len(data) < want or (size is not None and len(data) >= size):  # the file ended inside its header
                raise ModelSourceError(f"{name}: not a readable GGUF file (it ends inside its header)") from None
            if want >= HEADER_MAX_READ:
                return None
            want *= 4
