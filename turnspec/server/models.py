"""The models a server can answer with, and the one resident in memory.

Every model's spec (template, tokenizer, stops) is loaded at start: it is small, it answers `/v1/models`
(capabilities, context length) and it encodes prompts before the weights are there. Weights are another matter:
one model is resident at a time. `acquire` (called by the generation worker, the only thread that touches
engines) unloads the resident model and loads the requested one; `check_fits` refuses, before a request is queued,
a swap that would not fit in memory. A batched engine later plugs in behind the same `acquire`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..chat import system_role_error
from ..errors import TemplateError, TurnspecError
from .protocol import APIError, ServeDefaults

if TYPE_CHECKING:
    from ..spec import ModelSpec

log = logging.getLogger("turnspec.server")


@dataclass
class ServedModel:
    """One model the server can load: its spec, how to load its weights, and what it can do."""

    id: str
    spec: ModelSpec
    engine_name: str | None = None
    engine_options: dict[str, Any] = field(default_factory=dict)
    defaults: ServeDefaults = field(default_factory=ServeDefaults)
    context_length: int = 0  # expected before loading, the engine's own after
    footprint: int | None = None  # bytes once loaded (estimate), None when unknown
    notices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from ..fim import fim_format
        from ..readiness import output_syntax

        spec = self.spec
        # The most characters one token stands for (a byte-level token's length counts its bytes, never fewer than
        # its characters): text longer than context x this cannot fit the context, whatever it is.
        tokens = spec.require_vocab().tokenizer.get_vocab(with_added_tokens=True)
        self.longest_token_chars = max((len(t) for t in tokens), default=1) or 1
        _ = spec.stops  # built once here, not raced for by the first concurrent requests
        self.generation_config = dict(getattr(getattr(spec, "files", None), "generation_config", None) or {})
        # A template that writes developer messages its own way keeps them; elsewhere they become system messages.
        self.developer_role = spec.analysis.roles.developer_native
        self.merge_system = self.defaults.system_mode == "merge" and system_role_error(spec) is not None
        self.fim = fim_format(spec.vocab)
        try:
            reasoning, tools = output_syntax(spec)
        except (TemplateError, TurnspecError):
            reasoning = tools = {"readable": False}
        self.capabilities = {"chat": True, "completion": True, "tools": bool(tools["readable"]),
                             "reasoning": bool(reasoning["readable"]), "fim": self.fim is not None,
                             "constrained": self.constrain_backend is not None}

    @property
    def constrain_backend(self) -> str | None:
        """How this model's engine enforces a forced call or JSON answer: llama.cpp grammars, llguidance, or not."""
        if self.engine_name == "llamacpp":
            return "gbnf"
        if self.engine_name in ("transformers", "mlx"):
            return "llguidance"
        return getattr(self, "_backend", None)

    @cached_property
    def literal_vocab(self) -> Any:
        """A copy of the tokenizer that reads control-token spellings as plain text: code sent for
        fill-in-the-middle may contain `<fim_suffix>` without moving the hole."""
        from tokenizers import Tokenizer

        from ..vocab import Vocabulary

        tokenizer = Tokenizer.from_str(self.spec.require_vocab().tokenizer.to_str())
        tokenizer.encode_special_tokens = True
        return Vocabulary(tokenizer)

    @property
    def max_prompt_chars(self) -> int | None:
        """The characters a prompt may have before it is tokenized (None: the context length is unknown)."""
        return self.context_length * self.longest_token_chars if self.context_length else None

    @property
    def owned_by(self) -> str:
        """The organization in the model's name (`HuggingFaceTB/SmolLM2…`), else "local"."""
        org, sep, _ = self.spec.name.partition("/")
        return org if sep and org else "local"

    def card(self, created: int, loaded: bool) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": created, "owned_by": self.owned_by,
                "context_length": self.context_length, "capabilities": dict(self.capabilities),
                "engine": self.engine_name, "loaded": loaded}


class UnknownModel(APIError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(404, f"the model {name!r} does not exist; this server serves: {', '.join(known)}",
                         param="model", code="model_not_found")


class ModelManager:
    """The served models by id, and the resident one (engine loaded). Thread rule: only the worker calls `acquire`."""

    def __init__(self, models: list[ServedModel], *, loader: Callable[[ServedModel], Any] | None = None,
                 memory_limit: int | None = None, available: Callable[[], int | None] | None = None):
        from .memory import available_memory

        if not models:
            raise TurnspecError("no model to serve")
        self.models: dict[str, ServedModel] = {}
        for m in models:
            if m.id in self.models:
                raise TurnspecError(f"two models are served as {m.id!r}: name one NAME=MODEL (e.g. "
                                    f"`turnspec serve a={m.id} ...`)")
            self.models[m.id] = m
        self.loader = loader or load_weights
        self.memory_limit = memory_limit
        self.available = available or available_memory
        self.resident: ServedModel | None = None
        self.engine: Any = None
        self.swaps = 0
        self.last_swap_s: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def preloaded(cls, model: ServedModel, engine: Any) -> "ModelManager":
        """One model whose engine is already loaded (the library's `create_app(spec, engine)`)."""
        manager = cls([model])
        manager.resident, manager.engine = model, engine
        model._backend = getattr(engine, "constrain_backend", None)
        model.context_length = int(getattr(engine, "context_length", 0) or model.context_length)
        return manager

    # --- which model a request means ----------------------------------------------------------------------
    def find(self, name: Any) -> ServedModel:
        """With one model, any name (or none) means it, as with llama.cpp's server; with several, the id."""
        if len(self.models) == 1:
            return next(iter(self.models.values()))
        if not isinstance(name, str) or not name:
            raise APIError(400, f"model: required when the server serves several models ({', '.join(self.models)})",
                           param="model", code="missing_model")
        if name not in self.models:
            raise UnknownModel(name, list(self.models))
        return self.models[name]

    def check_fits(self, model: ServedModel) -> None:
        """503 when loading `model` (after unloading the resident one) would exceed the memory there is."""
        with self._lock:
            resident = self.resident
        if model is resident or model.footprint is None:
            return
        free = self.available()
        budget = None if free is None else free + ((resident.footprint or 0) if resident is not None else 0)
        if self.memory_limit is not None:
            budget = self.memory_limit if budget is None else min(budget, self.memory_limit)
        if budget is not None and model.footprint > budget:
            from ..catalog.files import human_size

            after = f" after unloading {resident.id}" if resident is not None else ""
            limit = " (--max-memory)" if self.memory_limit is not None and budget == self.memory_limit else ""
            raise APIError(503, f"loading {model.id} needs about {human_size(model.footprint)} but only "
                                f"{human_size(budget)}{limit} would be free{after}; retry later or serve it alone",
                           type="server_error", code="insufficient_memory")

    # --- residency (worker thread only) -----------------------------------------------------------------------
    def acquire(self, model: ServedModel) -> Any:
        """The engine of `model`, swapping the resident model out first when it is another one."""
        if model is self.resident:
            return self.engine
        started = time.perf_counter()
        self._unload()
        engine = self.loader(model)
        with self._lock:
            self.resident, self.engine = model, engine
        model.context_length = int(getattr(engine, "context_length", 0) or model.context_length)
        self.swaps += 1
        self.last_swap_s = time.perf_counter() - started
        log.info("loaded %s (%s) in %.2f s", model.id, getattr(engine, "name", "?"), self.last_swap_s)
        return engine

    def _unload(self) -> None:
        engine = self.engine
        with self._lock:
            self.resident, self.engine = None, None
        if engine is not None:
            engine.close()
            gc.collect()

    def close(self) -> None:
        self._unload()


def load_weights(model: ServedModel) -> Any:
    from ..engines import load_engine

    return load_engine(model.engine_name, model.spec.files.path, **model.engine_options)


def expected_context_length(files: Any, engine_name: str, n_ctx: int | None) -> int:
    """The context the engine will report once loaded, known before loading (as each engine computes it)."""
    from ..engines.llamacpp import DEFAULT_MAX_CONTEXT

    config = getattr(files, "config", None) or {}
    trained = config.get("max_position_embeddings") or config.get("context_length")
    trained = int(trained) if isinstance(trained, int) and trained > 0 else None
    if engine_name == "llamacpp":
        return n_ctx or min(trained or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
    trained = trained or 4096
    return min(trained, n_ctx) if n_ctx else trained


def served_model(model_id: str, spec: ModelSpec, *, engine_name: str | None = None, n_ctx: int | None = None,
                 defaults: ServeDefaults | None = None, notices: list[str] | None = None,
                 parallel: int = 1, threads: int | None = None) -> ServedModel:
    """A ServedModel for `spec`, with its engine (given, or picked by kind), expected context and footprint.

    `parallel`: sequences the llama.cpp engine decodes together (each with the full context: the KV cache is
    `parallel` times larger); other engines run one at a time."""
    from ..engines import pick_engine
    from .memory import gguf_shape_config, model_footprint

    path = Path(spec.files.path)
    engine_name = engine_name or pick_engine(path)
    context = expected_context_length(spec.files, engine_name, n_ctx)
    try:
        config = gguf_shape_config(path) if path.suffix.lower() == ".gguf" else dict(spec.files.config or {})
        slots = parallel if engine_name == "llamacpp" else 1
        footprint = model_footprint(path, engine_name, context * slots, config)
    except (OSError, TurnspecError):
        footprint = None
    options: dict[str, Any] = {"n_ctx": n_ctx} if n_ctx else {}
    if engine_name == "llamacpp" and parallel > 1:
        options["parallel"] = parallel
    if threads and engine_name in ("llamacpp", "transformers"):
        options["n_threads"] = threads
    return ServedModel(model_id, spec, engine_name, options, defaults or ServeDefaults(), context, footprint,
                       list(notices or []))
