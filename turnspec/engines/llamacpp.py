"""llama.cpp engine (GGUF files) through llama-cpp-python.

We drive `Llama.generate`, the bare eval/sample loop: unlike `create_completion` it has no eos
check of its own (it never stops), so turnspec's stop set alone ends a turn.

KV-cache reuse: `Llama.generate(tokens)` with its default `reset=True` compares `tokens` with the
ids already in the context (`_input_ids[:n_tokens]`), drops the KV cells after the longest common
prefix and evaluates only the rest (llama-cpp-python 0.3.x; `reset=False` would instead *append*
to the old state, which is wrong for a new prompt). The sampled stop token is never evaluated
(the generator is lazy), so the cache holds prompt + reply minus its last token, and the next
turn's prompt, which repeats the whole history, is a cache hit up to there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from turnspec.engines.base import EngineBase, EngineError, physical_cores

DEFAULT_MAX_CONTEXT = 4096


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise EngineError(
            "the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'"
        ) from exc
    return llama_cpp


def trained_context(llm) -> int | None:
    """The context length the model was trained with, from the GGUF metadata llama.cpp read."""
    meta = getattr(llm, "metadata", None) or {}
    value = meta.get(f"{meta.get('general.architecture', '')}.context_length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class LlamaCppEngine(EngineBase):
    """A GGUF model loaded into llama.cpp; one KV cache, reused across calls by common prefix."""

    name = "llamacpp"

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = -1,
        verbose: bool = False,
    ) -> None:
        llama_cpp = _import_llama_cpp()
        model_path = Path(model_path)
        if not model_path.is_file():
            raise EngineError(f"{model_path}: no such GGUF file")
        if not verbose:
            # llama.cpp logs through a process-wide callback; at ERROR level it stays quiet.
            from llama_cpp import _logger

            _logger.set_verbose(False)
        def load(ctx: int):
            try:
                return llama_cpp.Llama(
                    model_path=str(model_path),
                    n_ctx=ctx,
                    n_threads=n_threads or physical_cores(),
                    n_gpu_layers=n_gpu_layers,
                    verbose=verbose,
                )
            except (ValueError, RuntimeError) as exc:
                raise EngineError(f"{model_path}: llama.cpp could not load it ({exc})") from exc

        # Default: min(trained context, 4096). The trained length is known only after loading
        # (parsing the GGUF in Python takes seconds); loading again is cheap (mmap) and rare.
        self._llm = load(n_ctx or DEFAULT_MAX_CONTEXT)
        trained = trained_context(self._llm)
        if n_ctx is None and trained is not None and trained < DEFAULT_MAX_CONTEXT:
            self._llm.close()
            self._llm = load(trained)
        self.model_path = model_path
        # llama.cpp may round the context up (to 256), but llama-cpp-python sizes its id buffer
        # with the n_ctx we asked for: the smaller one is the real limit.
        self.context_length = min(int(self._llm.n_ctx()), len(self._llm.input_ids))

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def _steps(self, prompt_ids: list[int], temperature: float, top_p: float, seed: int | None) -> Iterator[int]:
        import llama_cpp

        self._llm.set_seed(llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed)
        yield from self._llm.generate(
            prompt_ids,
            temp=max(0.0, temperature),
            top_p=top_p,
            top_k=0,  # 0 = off: temperature/top_p alone shape the distribution
            min_p=0.0,
            typical_p=1.0,
            repeat_penalty=1.0,
            reset=True,  # compare with the cached ids and reuse the common prefix
        )

    @property
    def cached_ids(self) -> list[int]:
        """The ids whose keys/values sit in the KV cache now (for tests and diagnostics)."""
        return [int(t) for t in self._llm._input_ids]

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None
