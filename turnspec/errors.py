"""Errors turnspec raises. Every message is one line that names the file or model and the fix."""

from __future__ import annotations


class TurnspecError(Exception):
    """Base class: the CLI prints these as one line, never a traceback."""


class ModelSourceError(TurnspecError):
    """A model could not be found or read (missing file, corrupt JSON/GGUF, unknown repo id)."""


class NoChatTemplateError(ModelSourceError):
    """The model has no chat template (a base model): pass one with `--template FILE`."""


class TemplateError(TurnspecError):
    """The chat template raised or could not be compiled; carries the model name and the template's message.

    `limit` is True when turnspec stopped the template (time, output size), not the template itself.
    """

    def __init__(self, message: str, *, model: str | None = None, template_message: str | None = None,
                 limit: bool = False):
        super().__init__(message)
        self.model = model
        self.template_message = template_message if template_message is not None else message
        self.limit = limit


class EncodingError(TurnspecError):
    """Encoding would produce a wrong sequence, e.g. a second BOS."""
