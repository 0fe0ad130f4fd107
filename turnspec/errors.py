"""Errors turnspec raises. Every message is one line that names the file or model and the fix.

Each class carries the command-line exit code and the stable `code` that `--json` output reports, so scripts can
tell "not found" from "access refused" from "not a chat model" without parsing messages (README: Exit codes).
"""

from __future__ import annotations


def one_line(exc: BaseException | str, *, limit: int | None = None, template_message: bool = False,
             name_type: bool = False, unnamed: tuple[type[BaseException], ...] = ()) -> str:
    """An exception's message on one line (runs of whitespace, newlines included, become one space).

    `template_message`: a TemplateError's own message, without "the chat template of X raised:" (for reports that
    already say which template). `name_type`: "KeyError: 'x'" for exceptions that are not turnspec's own (nor of
    the `unnamed` types): a library error or a bug, whose message alone can be cryptic. `limit`: cut to that many
    characters, ending in "...".
    """
    if isinstance(exc, str):
        msg = exc
    else:
        msg = exc.template_message if template_message and isinstance(exc, TemplateError) and exc.template_message \
            else str(exc)
        own = isinstance(exc, TurnspecError) or type(exc).__module__.startswith("turnspec") or isinstance(exc, unnamed)
        if name_type and not own:
            msg = f"{type(exc).__name__}: {msg}"
    msg = " ".join(str(msg).split())
    return msg if limit is None or len(msg) <= limit else msg[:limit - 3] + "..."


class TurnspecError(Exception):
    """Base class: the CLI prints these as one line, never a traceback."""

    exit_code = 1
    code = "error"


class ModelSourceError(TurnspecError):
    """A model could not be found or read (missing file, corrupt JSON/GGUF, unknown repo id)."""


class NotFoundError(TurnspecError):
    """No such model, repo, revision, file or profile."""

    exit_code = 3
    code = "not_found"


class ModelNotFoundError(NotFoundError, ModelSourceError):
    """A model source that does not exist (no such path, not in the cache, not on the Hub)."""


class AccessError(ModelSourceError):
    """A gated or private repo: the token is missing or was refused."""

    exit_code = 4
    code = "access_denied"


class NoChatTemplateError(ModelSourceError):
    """The model has no chat template (a base model): pass one with `--template FILE`."""

    exit_code = 5
    code = "no_chat_template"


class DownloadError(ModelSourceError):
    """A download failed midway (network, Hub error, disk full): running the same pull again resumes it."""

    exit_code = 6
    code = "download_failed"


class TemplateError(TurnspecError):
    """The chat template raised or could not be compiled; carries the model name and the template's message.

    `limit` is True when turnspec stopped the template (time, output size), not the template itself.
    """

    code = "template_error"

    def __init__(self, message: str, *, model: str | None = None, template_message: str | None = None,
                 limit: bool = False):
        super().__init__(message)
        self.model = model
        self.template_message = template_message if template_message is not None else message
        self.limit = limit


class EncodingError(TurnspecError):
    """Encoding would produce a wrong sequence, e.g. a second BOS."""
