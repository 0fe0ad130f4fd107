"""The Hub's names for commits and blobs (git hashes, sha256): checked before they name anything on disk. Below both
the Hub queries (remote.py) and the downloads (fetch.py)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import DownloadError
from ..sources.hub_errors import hub_endpoint

SHA256 = re.compile(r"[0-9a-f]{64}")
GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


def checked_commit(commit: Any, repo_id: str) -> str:
    """The commit id the Hub named, if it is a git hash (it names the snapshot folder)."""
    if not isinstance(commit, str) or not GIT_SHA1.fullmatch(commit):
        raise DownloadError(f"{repo_id}: the Hub at {hub_endpoint()} named the commit {str(commit)[:80]!r}, not a "
                            "40-digit git hash; refusing it (check HF_ENDPOINT and proxy settings)")
    return commit


def is_content_hash(etag: Any) -> bool:
    """A sha256 (LFS files) or git blob sha1 (the rest), in lower-case hex, as the Hub names blobs."""
    return isinstance(etag, str) and bool(SHA256.fullmatch(etag) or GIT_SHA1.fullmatch(etag))
