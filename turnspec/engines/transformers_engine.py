"""transformers engine (HF folders with safetensors) on torch.

We call the model step by step with a `DynamicCache` instead of `model.generate`, so that stopping
is turnspec's stop set (not `generation_config.eos_token_id`), cancellation is checked between
steps, and the KV cache outlives a call: the next prompt reuses the longest common prefix
(`DynamicCache.crop`), like llama.cpp does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from turnspec.engines.base import EngineBase, EngineError, common_prefix, default_threads

MISSING = "the transformers engine needs transformers and torch: pip install 'turnspec[transformers]'"


def _import_torch_transformers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise EngineError(MISSING) from exc
    return torch, transformers


class TransformersEngine(EngineBase):
    """An HF causal LM on CPU (or whatever `device` names), decoded one token at a time."""

    name = "transformers"

    def __init__(
        self,
        model_path: Path,
        *,
        dtype: str = "float32",
        device: str = "cpu",
        n_threads: int | None = None,
        n_ctx: int | None = None,
        verbose: bool = False,
    ) -> None:
        torch, transformers = _import_torch_transformers()
        from transformers.utils import logging as hf_logging

        was_enabled = hf_logging.is_progress_bar_enabled()
        self._torch = torch
        model_path = Path(model_path)
        if not model_path.exists():
            raise EngineError(f"{model_path}: no such model folder")
        if device == "cpu":
            torch.set_num_threads(n_threads or default_threads())
        kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
        if model_path.is_file() and model_path.suffix.lower() == ".gguf":
            # transformers dequantizes a GGUF itself (slow, needs `accelerate`); a folder is better.
            source, kwargs["gguf_file"] = str(model_path.parent), model_path.name
        else:
            source = str(model_path)
        if not verbose:
            hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter a chat on stderr
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            raise EngineError(f"{model_path}: transformers could not load it ({exc})") from exc
        finally:
            if was_enabled:
                hf_logging.enable_progress_bar()
        self._model = model.to(device).eval()
        self._device = device
        trained = getattr(model.config, "max_position_embeddings", None) or 4096
        self.context_length = int(min(trained, n_ctx) if n_ctx else trained)
        self.model_path = model_path
        self._cache: Any = None
        self._cached_ids: list[int] = []
        self._n_vocab = int(self._model.get_output_embeddings().weight.shape[0])

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _steps(self, prompt_ids: list[int], temperature: float, top_p: float, seed: int | None,
               constraint: Any = None) -> Iterator[int]:
        torch = self._torch
        guide = self.guide(constraint, self._n_vocab)
        from transformers import DynamicCache

        reuse = common_prefix(self._cached_ids, prompt_ids)
        reuse = min(reuse, len(prompt_ids) - 1)  # evaluate at least one token to get logits
        drop = len(self._cached_ids) - reuse
        if self._cache is None or reuse == 0 or (drop > 0 and not getattr(self._cache, "is_croppable", True)):
            self._cache, self._cached_ids = DynamicCache(), []
        elif drop > 0:
            # A negative count removes that many tail positions in transformers 4.x and 5.x alike.
            self._cache.crop(-drop)
            self._cached_ids = self._cached_ids[:reuse]
        generator = torch.Generator(device="cpu")
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        pending = prompt_ids[reuse:]
        with torch.inference_mode():
            while True:
                logits = self._forward(pending)
                if guide is not None and guide.active:
                    allowed = torch.from_numpy(guide.allowed_tokens(logits.shape[-1]))
                    logits = logits.masked_fill(~allowed, float("-inf"))
                token = self._sample(logits, temperature, top_p, generator)
                if guide is not None:
                    guide.consume(token)
                yield token
                pending = [token]

    def _forward(self, ids: list[int]) -> Any:
        """Run `ids` through the model on top of the cache; return the last position's logits."""
        torch = self._torch
        input_ids = torch.tensor([ids], dtype=torch.long, device=self._device)
        try:
            out = self._model(input_ids=input_ids, past_key_values=self._cache, use_cache=True, logits_to_keep=1)
        except BaseException:
            # The cache is updated layer by layer in place: after a failure it matches no id list.
            self._cache, self._cached_ids = None, []
            raise
        self._cache = out.past_key_values
        self._cached_ids.extend(ids)
        return out.logits[0, -1].float()

    def _sample(self, logits: Any, temperature: float, top_p: float, generator: Any) -> int:
        """Greedy at temperature 0, else temperature then nucleus (top_p) sampling."""
        torch = self._torch
        if temperature <= 0.0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            drop = cumulative - sorted_probs > top_p  # keep the smallest set reaching top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs.cpu(), 1, generator=generator))

    def close(self) -> None:
        self._model = None
        self._cache = None
        self._cached_ids = []
