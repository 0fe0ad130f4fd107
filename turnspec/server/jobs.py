"""A queued generation (`Job`), what its queue receives last (`Finished`), and the "queue was empty" marker: shared
by the worker thread (worker.py) and the batch loop (batch.py), below both."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from ..chat import GenerationOptions, TurnResult


@dataclass
class Finished:
    """The last item a job's queue receives: the turn's numbers, or why it failed."""

    result: TurnResult
    error: BaseException | None = None
    skipped: bool = False


class Job:
    """One request's generation: its model, prompt, options, cancel flag and the asyncio queue its events arrive on.

    `reader`/`stop_ids` replace the chat reader and the model's halt ids (raw completions). Create it on the event
    loop's thread (it binds to the running loop).
    """

    def __init__(self, model: Any, enc: Any, options: GenerationOptions, *, reader: Any = None,
                 stop_ids: Any = None):
        self.model = model
        self.enc = enc
        self.options = options
        self.reader = reader
        self.stop_ids = stop_ids
        self.cancel = threading.Event()
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def emit(self, item: Any) -> None:
        """Called from the worker thread. A closed loop (server shutting down) cancels the job."""
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:
            self.cancel.set()


NO_JOB = object()  # "the queue had nothing" (None in the queue is the stop sentinel)
