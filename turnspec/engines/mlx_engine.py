"""MLX engine (HF folders with safetensors) through mlx-lm; Metal on Apple Silicon, CPU elsewhere.

We use mlx-lm's model loading, KV cache and samplers with our own step loop rather than
`generate_step`, so that we know exactly which ids the cache holds (`cached_ids`) and the next
prompt reuses the common prefix (`trim_prompt_cache`), as the other engines do. Like
`generate_step`, the loop queues the step on token n before handing token n out, so decoding
overlaps with the caller's work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from turnspec.engines.base import EngineBase, EngineError, common_prefix

MISSING = "the mlx engine needs mlx-lm: pip install 'turnspec[mlx]' (on Linux also: pip install 'mlx[cpu]')"


def _import_mlx() -> tuple[Any, Any, Any, Any]:
    try:
        import mlx.core as mx
        from mlx_lm.models import cache as mlx_cache
        from mlx_lm.sample_utils import make_sampler
        from mlx_lm.utils import load_model
    except ImportError as exc:
        raise EngineError(MISSING) from exc
    return mx, mlx_cache, make_sampler, load_model


class MlxEngine(EngineBase):
    """An HF-folder model loaded with mlx-lm, decoded one token at a time."""

    name = "mlx"

    def __init__(self, model_path: Path, *, n_ctx: int | None = None) -> None:
        mx, mlx_cache, make_sampler, load_model = _import_mlx()
        self._mx, self._mlx_cache, self._make_sampler = mx, mlx_cache, make_sampler
        model_path = Path(model_path)
        config_path = model_path / "config.json"
        if not config_path.is_file():
            raise EngineError(f"{model_path}: the mlx engine needs an HF folder with config.json and safetensors")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        overrides: dict[str, Any] = {}
        theta = (config.get("rope_parameters") or {}).get("rope_theta")
        if theta is not None and "rope_theta" not in config:
            overrides["rope_theta"] = theta  # transformers 5 moved it; mlx-lm would fall back to 10000
        try:
            self._model, _ = load_model(model_path, model_config=overrides or None)
        except (OSError, ValueError) as exc:
            raise EngineError(f"{model_path}: mlx-lm could not load it ({exc})") from exc
        trained = int(config.get("max_position_embeddings") or 4096)
        self.context_length = min(trained, n_ctx) if n_ctx else trained
        self.model_path = model_path
        self._cache: list[Any] | None = None
        self._cached_ids: list[int] = []
        self._n_vocab = int(config.get("vocab_size") or 0)


    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _steps(self, prompt_ids: list[int], temperature: float, top_p: float, seed: int | None,
               constraint: Any = None) -> Iterator[int]:
        mx, mlx_cache = self._mx, self._mlx_cache
        reuse = min(common_prefix(self._cached_ids, prompt_ids), len(prompt_ids) - 1)
        drop = len(self._cached_ids) - reuse
        if self._cache is None or reuse == 0 or (drop > 0 and not mlx_cache.can_trim_prompt_cache(self._cache)):
            self._cache, self._cached_ids = mlx_cache.make_prompt_cache(self._model), []
        elif drop > 0:
            mlx_cache.trim_prompt_cache(self._cache, drop)
            self._cached_ids = self._cached_ids[:reuse]
        if seed is not None:
            mx.random.seed(seed)
        sampler = self._make_sampler(temp=max(0.0, temperature), top_p=top_p if top_p < 1.0 else 0.0)
        self.last_reused = len(self._cached_ids)
        pending = prompt_ids[len(self._cached_ids):]
        if constraint is not None:
            yield from self._guided_steps(pending, sampler, self.guide(constraint, self._n_vocab))
            return
        token = self._sample(self._forward(pending), sampler)
        while True:
            # Queue the step on this token before handing it out, as mlx-lm's generate_step does: the model
            # computes token n+1 while the caller reads token n. The stop token's step is computed too (one
            # spare step per turn); the cache then holds every id handed out, in step with `cached_ids`.
            following = self._sample(self._step(token), sampler)
            mx.async_eval(following)
            value = int(token.item())
            self._cached_ids.append(value)
            yield value
            token = following

    def _guided_steps(self, pending: list[int], sampler: Any, guide: Any) -> Iterator[int]:
        """Constrained decoding: the mask for token n+1 needs token n, so no step is queued ahead."""
        mx = self._mx
        logits = self._forward(pending)
        while True:
            if guide.active:
                allowed = mx.array(guide.allowed_tokens(logits.shape[-1]))
                logits = mx.where(allowed, logits, -mx.inf)
            token = self._sample(logits, sampler)
            value = int(token.item())
            guide.consume(value)
            yield value
            logits = self._step(token)
            self._cached_ids.append(value)

    def _sample(self, logits: Any, sampler: Any) -> Any:
        """The sampled id as a lazy (1,) array."""
        return sampler(logits - self._mx.logsumexp(logits, keepdims=True))

    def _step(self, token: Any) -> Any:
        """Queue one decode step on a sampled id (lazy); return its logits (1, vocab)."""
        try:
            return self._model(token.reshape(1, 1), cache=self._cache)[:, -1, :]
        except BaseException:
            self._cache, self._cached_ids = None, []
            raise

    def _forward(self, ids: list[int]) -> Any:
        """Run `ids` through the model on top of the cache; return the last position's logits (1, vocab)."""
        mx = self._mx
        try:
            if len(ids) > 1:
                # Prefill without the LM head: MLX is lazy, so logits nobody evaluates cost
                # nothing, and on the CPU backend the head over every prompt position is ~40%
                # of the prefill time.
                self._model(mx.array(ids[:-1])[None], cache=self._cache)
                mx.eval([c.state for c in self._cache])
            logits = self._model(mx.array(ids[-1:])[None], cache=self._cache)[:, -1, :]
            mx.eval(logits)
        except BaseException:
            self._cache, self._cached_ids = None, []
            raise
        self._cached_ids.extend(ids)
        return logits

    def close(self) -> None:
        self._model = None
        self._cache = None
        self._cached_ids = []
