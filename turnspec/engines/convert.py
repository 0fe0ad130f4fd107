"""Turn a GGUF into an HF folder (config.json + model.safetensors + tokenizer) for transformers and MLX.

transformers can read a GGUF itself (`from_pretrained(dir, gguf_file=...)`, which dequantizes the
weights); we save the result so the slow part happens once. Needs torch, transformers, accelerate.
"""

from __future__ import annotations

import json
from pathlib import Path

from turnspec.engines.base import EngineError

MISSING = (
    "converting a GGUF to an HF folder needs transformers, torch and accelerate: "
    "pip install 'turnspec[transformers]' accelerate"
)


def gguf_to_hf_folder(gguf_path: Path, out_dir: Path, *, dtype: str = "float32") -> Path:
    """Dequantize `gguf_path` into `out_dir` (created); return `out_dir`. Skips work if already done."""
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    done = out_dir / ".turnspec-converted"
    if done.is_file() and done.read_text(encoding="utf-8") == f"{gguf_path.resolve()}\n{dtype}\n":
        return out_dir
    try:
        import accelerate  # noqa: F401  (transformers refuses GGUF loading without it)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise EngineError(MISSING) from exc
    if not gguf_path.is_file():
        raise EngineError(f"{gguf_path}: no such GGUF file")
    src, name = str(gguf_path.parent), gguf_path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=getattr(torch, dtype))
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    except (OSError, ValueError, KeyError) as exc:
        raise EngineError(f"{gguf_path}: transformers could not read this GGUF ({exc})") from exc
    # The loaded model still carries the GGUF "quantizer", which makes save_pretrained refuse;
    # its weights are already plain dequantized tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _add_legacy_rope_theta(out_dir / "config.json")
    done.write_text(f"{gguf_path.resolve()}\n{dtype}\n", encoding="utf-8")
    return out_dir


def _add_legacy_rope_theta(config_path: Path) -> None:
    """transformers 5 writes `rope_parameters.rope_theta`; mlx-lm (and transformers 4) read `rope_theta`."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    theta = (config.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and "rope_theta" not in config:
        config["rope_theta"] = theta
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
