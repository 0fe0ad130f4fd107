"""llama.cpp engine (GGUF files) on llama-cpp-python's low-level API.

The engine decodes through a `Batcher` (llamacpp_batch.py): one llama.cpp context whose KV cache holds up to
`parallel` sequences (`n_seq_max`, one shared cache), each up to the model's context length. `generate()` (the Engine contract:
`turnspec run`, the library, a one-at-a-time server) runs one sequence; the server's scheduler drives several
at once with `start` / `step` / `release`. Sampling is llama.cpp's own sampler chain per sequence, plus a
llama.cpp grammar when the turn is constrained.

There is no eos check of llama.cpp's own: turnspec's stop set alone ends a turn. KV-cache reuse: a sequence
placed in a slot keeps the cells of the longest common prefix with what the slot held, and only the rest of the
prompt is evaluated. The sampled stop token is never evaluated (sampling is lazy), so after a turn the cache holds
prompt + reply minus its last token, and the next turn's prompt, which repeats the whole history, is a cache hit
up to there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from turnspec.engines.base import EngineBase, EngineError, default_threads

DEFAULT_MAX_CONTEXT = 4096
N_BATCH = 512
_backend_lock = threading.Lock()
_backend_ready = False


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise EngineError(
            "the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'"
        ) from exc
    return llama_cpp


def _init_backend(llama_cpp: Any) -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


def trained_context(metadata: dict[str, str]) -> int | None:
    """The context length the model was trained with, from the GGUF metadata llama.cpp read."""
    value = metadata.get(f"{metadata.get('general.architecture', '')}.context_length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class LlamaCppEngine(EngineBase):
    """A GGUF model in llama.cpp; `parallel` sequences share one KV cache (the server batches them)."""

    name = "llamacpp"
    constrain_backend = "gbnf"
    logprobs = True

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = -1,
        parallel: int = 1,
        verbose: bool = False,
    ) -> None:
        llama_cpp = _import_llama_cpp()
        from llama_cpp import _internals

        model_path = Path(model_path)
        if not model_path.is_file():
            raise EngineError(f"{model_path}: no such GGUF file")
        if parallel < 1:
            raise EngineError(f"parallel must be at least 1, not {parallel}")
        if not verbose:
            # llama.cpp logs through a process-wide callback; at ERROR level it stays quiet.
            from llama_cpp import _logger

            _logger.set_verbose(False)
        _init_backend(llama_cpp)
        self._lc = llama_cpp
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        try:
            self._model = _internals.LlamaModel(path_model=str(model_path), params=params, verbose=verbose)
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"{model_path}: llama.cpp could not load it ({exc})") from exc
        self.metadata = self._model.metadata()
        # Default: min(trained context, 4096) per sequence.
        trained = trained_context(self.metadata)
        per_seq = n_ctx or min(trained or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
        threads = self.threads = n_threads or default_threads()
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = per_seq * parallel
        cparams.n_batch = cparams.n_ubatch = N_BATCH
        cparams.n_seq_max = parallel
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.no_perf = True
        # One KV cache shared by every sequence: 4 streams decode at 1.5x one stream's throughput on 2 CPU cores
        # (SmolLM2), against 1.1x with a cache per sequence. Either way a batched sequence's floating-point sums
        # depend on the batch, so greedy answers can part from one-at-a-time answers after some tokens (as in
        # llama-server and vLLM). Each sequence is held to `per_seq` tokens (context_length): together they fit.
        cparams.kv_unified = parallel > 1
        # as llama-cpp-python's Llama (and this engine before batching): greedy answers stay the same
        cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        try:
            from llama_cpp._utils import suppress_stdout_stderr

            # llama.cpp warns on stderr, past its log callback, that the shared cache exceeds the trained context:
            # it is the sum of the sequences' contexts, each held to `per_seq`
            with suppress_stdout_stderr(disable=verbose):
                self._ctx = _internals.LlamaContext(model=self._model, params=cparams, verbose=verbose)
        except (ValueError, RuntimeError) as exc:
            self._model.close()
            raise EngineError(f"{model_path}: llama.cpp could not create a context ({exc})") from exc
        self.model_path = model_path
        self.parallel = parallel
        self.context_length = min(per_seq, int(self._ctx.n_ctx()))
        n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._model.vocab))
        self._batcher = _batcher(llama_cpp, self._ctx.ctx, self._model.vocab, n_vocab, parallel)

    @property
    def loaded(self) -> bool:
        return self._batcher is not None

    @property
    def batcher(self) -> Any:
        """The sequences in flight (the server's scheduler drives it from its one thread)."""
        if self._batcher is None:
            raise EngineError("the llamacpp engine was closed")
        return self._batcher

    def _steps(self, prompt_ids: list[int], temperature: float, top_p: float, seed: int | None,
               constraint: Any = None, logprobs: int | None = None, on_logprobs: Any = None) -> Iterator[int]:
        batcher = self.batcher
        seq = batcher.start(prompt_ids, temperature=temperature, top_p=top_p, seed=seed, constraint=constraint,
                            logprobs=logprobs)
        self.last_reused = seq.reused  # the turn's cached prompt tokens (usage.prompt_tokens_details.cached_tokens)
        try:
            while True:
                token = None
                while token is None:
                    for s, t in batcher.step():
                        if s is seq:
                            token = t
                if on_logprobs is not None:
                    on_logprobs(seq.sampler.last)
                yield token
        except GeneratorExit:  # the caller is done (a stop token, cancel, max_tokens): the cells stay valid
            raise
        except BaseException:
            self._forget(seq.slot)
            raise
        finally:
            batcher.release(seq)

    def _forget(self, slot: Any) -> None:
        """Drop a slot's cells (after a failed decode they match no id list)."""
        self._lc.llama_memory_seq_rm(self.batcher.mem, slot.id, -1, -1)
        slot.cached = []

    @property
    def cached_ids(self) -> list[int]:
        """The ids whose keys/values sit in the KV cache of the most recently used slot (tests, diagnostics)."""
        slots = self.batcher.slots
        return list(max(slots, key=lambda s: s.last_used).cached)

    def reset(self) -> None:
        """Forget every cached prefix (benchmarks: every run pays for its whole prompt)."""
        for slot in self.batcher.slots:
            self._forget(slot)

    def close(self) -> None:
        batcher = getattr(self, "_batcher", None)
        if batcher is not None:
            batcher.close()
            self._batcher = None
            self._ctx.close()
            self._model.close()


def _batcher(llama_cpp: Any, ctx: Any, vocab: Any, n_vocab: int, parallel: int) -> Any:
    from .llamacpp_batch import Batcher

    n_batch = int(llama_cpp.llama_n_batch(ctx))  # llama.cpp caps it at the context size
    return Batcher(llama_cpp, ctx, vocab, n_vocab, parallel, n_batch)
