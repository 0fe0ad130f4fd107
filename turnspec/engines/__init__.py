"""Pluggable inference engines: llama.cpp (GGUF), MLX and transformers (HF folders).

Each engine is an optional extra, imported only when it is loaded, so `import turnspec.engines`
costs nothing and never pulls in llama_cpp, torch or mlx.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from turnspec.engines.base import Engine, EngineBase, EngineError, stop_rules

ENGINE_NAMES = ("llamacpp", "mlx", "transformers")

__all__ = ["ENGINE_NAMES", "Engine", "EngineBase", "EngineError", "engines_for_format", "load_engine", "pick_engine",
           "stop_rules"]

# The packages each engine imports, and the weight formats it runs.
_ENGINE_MODULES = {"llamacpp": ("llama_cpp",), "mlx": ("mlx_lm",), "transformers": ("torch", "transformers")}
_ENGINE_FORMATS = {"llamacpp": ("gguf",), "mlx": ("safetensors",), "transformers": ("safetensors", "pytorch")}


def _is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def pick_engine(model_path: Path) -> str:
    """The engine for a model when none is named: GGUF → llamacpp; HF folder → mlx on Apple Silicon, else transformers."""
    model_path = Path(model_path)
    if model_path.is_file():
        if model_path.suffix.lower() == ".gguf":
            return "llamacpp"
        raise EngineError(f"{model_path}: not a GGUF file; pass a .gguf file or a folder with safetensors weights")
    if model_path.is_dir():
        if any(model_path.glob("*.safetensors")):
            return "mlx" if _is_apple_silicon() else "transformers"
        ggufs = sorted(model_path.glob("*.gguf"))
        if len(ggufs) == 1:
            return "llamacpp"
        if any(model_path.glob("*.bin")):
            return "transformers"
        raise EngineError(f"{model_path}: no weights found (neither *.safetensors nor a single *.gguf)")
    raise EngineError(f"{model_path}: no such file or folder")


def engines_for_format(weights_format: str) -> list[str]:
    """The engines installed here that run `weights_format` ("gguf", "safetensors", "pytorch"), preferred first.

    Checked with `importlib.util.find_spec`: nothing is imported, so `turnspec list` stays fast.
    """
    from importlib.util import find_spec

    order = ("llamacpp", "mlx", "transformers") if _is_apple_silicon() else ("llamacpp", "transformers")
    found = []
    for name in order:
        if weights_format in _ENGINE_FORMATS[name] and all(find_spec(m) is not None for m in _ENGINE_MODULES[name]):
            found.append(name)
    return found


def load_engine(name: str | None, model_path: Path, **opts: Any) -> Engine:
    """Load `model_path` into the engine `name` (or the one `pick_engine` chooses).

    `opts` go to the engine's constructor (e.g. `n_ctx`, `n_threads` for llamacpp; `dtype` for
    transformers). A missing extra package raises `EngineError` naming the pip command.
    """
    model_path = Path(model_path)
    if name is None:
        name = pick_engine(model_path)
    if name == "llamacpp":
        from turnspec.engines.llamacpp import LlamaCppEngine

        if model_path.is_dir():
            ggufs = sorted(model_path.glob("*.gguf"))
            if len(ggufs) != 1:
                raise EngineError(f"{model_path}: the llamacpp engine needs one .gguf file, found {len(ggufs)}")
            model_path = ggufs[0]
        return LlamaCppEngine(model_path, **opts)
    if name == "transformers":
        from turnspec.engines.transformers_engine import TransformersEngine

        return TransformersEngine(model_path, **opts)
    if name == "mlx":
        from turnspec.engines.mlx_engine import MlxEngine

        return MlxEngine(model_path, **opts)
    raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINE_NAMES)}")
