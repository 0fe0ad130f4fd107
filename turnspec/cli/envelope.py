"""`--json` output: every command prints the same envelope, one JSON object per line, success or failure.

    {"schema": "turnspec/1", "command": "list", "ok": true, "data": ..., "notices": [...], "error": null}
    {"schema": "turnspec/1", "command": "pull", "ok": false, "data": null, "notices": [],
     "error": {"code": "access_denied", "message": "...", "exit_code": 4}}

`data` is the command's own payload (documented per command in the README); `error.code` and `exit_code` come
from the turnspec error class, so scripts branch on them, not on message text. Errors also go to stderr as one
line, as without --json.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from ..errors import TurnspecError, one_line

SCHEMA = "turnspec/1"
INTERRUPTED_EXIT = 130


def envelope(command: str | None, data: Any = None, *, notices: Iterable[str] = (),
             error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"schema": SCHEMA, "command": command, "ok": error is None, "data": data,
            "notices": [" ".join(str(n).split()) for n in notices], "error": error}


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The envelope's `error` for an exception: its stable code, one-line message and the process exit code."""
    if isinstance(exc, KeyboardInterrupt):
        return {"code": "interrupted", "message": "interrupted", "exit_code": INTERRUPTED_EXIT}
    code = getattr(exc, "code", "error")
    return {"code": code if isinstance(code, str) else "error", "message": one_line(exc),
            "exit_code": int(getattr(exc, "exit_code", 1))}


def emit(command: str, data: Any, notices: Iterable[str] = (), error: dict[str, Any] | None = None) -> None:
    """Print one envelope on stdout (one line: a stream of them is JSON Lines)."""
    sys.stdout.write(json.dumps(envelope(command, data, notices=notices, error=error), ensure_ascii=False,
                                default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def reporting(command: str | None = None, as_json: bool = False) -> Iterator[None]:
    """Turn turnspec errors into `turnspec: error: ...` on stderr (plus the error envelope with --json) and the
    error's exit code; Ctrl-C exits 130 without a traceback."""
    try:
        yield
    except TurnspecError as exc:
        print(f"turnspec: error: {one_line(exc)}", file=sys.stderr)
        if as_json:
            emit(command or "turnspec", None, error=error_fields(exc))
        raise SystemExit(getattr(exc, "exit_code", 1)) from None
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        if as_json:
            emit(command or "turnspec", None, error=error_fields(KeyboardInterrupt()))
        raise SystemExit(INTERRUPTED_EXIT) from None
