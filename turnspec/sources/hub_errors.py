"""huggingface_hub failures as one-line turnspec errors, each with the exit code that says what kind it is.

Shared by every path that talks to the Hub (`--download` of tokenizer files, `turnspec pull`), so a gated repo
reads the same everywhere. Whether a token is configured is asked from huggingface_hub (`get_token`), which is
what it will send; turnspec never reads or prints the token itself.
"""

from __future__ import annotations

import errno
import os

from ..errors import AccessError, DownloadError, ModelNotFoundError, ModelSourceError, TurnspecError


def hub_endpoint() -> str:
    """HF_ENDPOINT as set now (huggingface_hub reads it once, at import), else the hub's own setting."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _has_token() -> bool:
    try:
        from huggingface_hub import get_token

        return get_token() is not None
    except Exception:  # noqa: BLE001 - an unreadable token file counts as no token
        return False


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def hub_error(exc: BaseException, repo_id: str, doing: str, *, revision: str | None = None,
              filename: str | None = None) -> TurnspecError:
    """The one-line error for `exc`, raised by huggingface_hub while `doing` something with `repo_id`."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{hub_endpoint()}/{repo_id}"
    if isinstance(exc, TurnspecError):
        return exc
    if isinstance(exc, GatedRepoError):
        if _has_token():
            return AccessError(f"{repo_id}: gated on the Hugging Face Hub and your token was refused; accept its "
                               f"license at {page} with the account the token belongs to")
        return AccessError(f"{repo_id}: gated on the Hugging Face Hub; accept its license at {page} and log in with "
                           "`hf auth login` (or set HF_TOKEN)")
    if isinstance(exc, RepositoryNotFoundError):
        login = ("your token has no access to it" if _has_token()
                 else "log in with `hf auth login` (or set HF_TOKEN)")
        return ModelNotFoundError(f"{repo_id}: no such model on the Hugging Face Hub (or it is private: {login}); "
                                  "check the id")
    if isinstance(exc, RevisionNotFoundError):
        return ModelNotFoundError(f"{repo_id}: the Hub has no revision {revision or 'main'!r} for it; check the "
                                  "repo id and --revision")
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return ModelNotFoundError(f"{repo_id}: the Hub has no file {filename or ''!r} in it; check the file name")
    if isinstance(exc, HFValidationError):
        return ModelSourceError(f"{repo_id}: not a valid Hugging Face repo id; expected org/name")
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)) or \
            type(exc).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"):
        return DownloadError(f"{repo_id}: cannot reach the Hugging Face Hub at {hub_endpoint()} ({doing}); check "
                             "your connection (or HF_ENDPOINT / proxy settings)")
    if _status(exc) in (401, 403):
        return AccessError(f"{repo_id}: the Hub refused access ({_reason(exc)}); log in with `hf auth login`")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DownloadError(f"{repo_id}: the disk is full ({doing}); free some space and pull again to resume")
    return DownloadError(f"{repo_id}: {doing} failed ({_reason(exc)})")
