"""Turn a GGUF into an HF folder (config.json + model.safetensors + tokenizer) for transformers, MLX and training.

transformers can read a GGUF itself (`from_pretrained(dir, gguf_file=...)`, which dequantizes the
weights); we save the result so the slow part happens once. Needs torch, transformers, accelerate.
The folder is written beside its target under a temporary name and renamed into place, so an interrupted or
failed conversion never leaves a half-written model where a trainer would pick it up.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Iterator

from turnspec.engines.base import EngineError
from turnspec.errors import one_line

MISSING = (
    "converting a GGUF to an HF folder needs transformers, torch and accelerate: "
    "pip install 'turnspec[transformers]' accelerate"
)
DTYPES = ("float32", "float16", "bfloat16")
DONE_MARKER = ".turnspec-converted"


def gguf_to_hf_folder(gguf_path: Path, out_dir: Path, *, dtype: str = "float32", overwrite: bool = False) -> Path:
    """Dequantize `gguf_path` into the folder `out_dir`; return `out_dir`.

    An `out_dir` that already holds this conversion (same GGUF, same dtype) is returned as it is, unless
    `overwrite`; any other non-empty `out_dir` is refused unless `overwrite`, and then replaced whole.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    stamp = f"{gguf_path.resolve()}\n{dtype}\n"
    if not overwrite and _read_marker(out_dir) == stamp:
        return out_dir
    if dtype not in DTYPES:
        raise EngineError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    check_output_folder(out_dir, gguf_path, overwrite=overwrite, fix="pass overwrite=True")
    with staged_folder(out_dir) as folder:  # made first: an unwritable target fails before the slow part
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
        except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
            reason = one_line(exc) or type(exc).__name__
            raise EngineError(f"{gguf_path}: transformers could not read this GGUF ({reason})") from exc
        # The loaded model still carries the GGUF "quantizer", which makes save_pretrained refuse;
        # its weights are already plain dequantized tensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        _add_legacy_rope_theta(folder / "config.json")
        (folder / DONE_MARKER).write_text(stamp, encoding="utf-8")
    return out_dir


def check_output_folder(out_dir: Path, gguf_path: Path, *, overwrite: bool, fix: str) -> None:
    """Refuse an output that is a file, that holds the GGUF (replacing it would delete the source), or a non-empty
    folder unless `overwrite` (`fix` says how to allow it)."""
    if out_dir.resolve() in Path(gguf_path).resolve().parents:
        raise EngineError(f"{out_dir}: holds the GGUF being converted ({Path(gguf_path).name}); name another folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise EngineError(f"{out_dir}: exists and is not a folder; name a new folder for the converted model")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise EngineError(f"{out_dir}: exists and is not empty; {fix} to replace it, or name a new folder")


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """A fresh folder beside `out_dir` to write into; renamed to `out_dir` (replacing what was there) when the block
    ends without an error, removed otherwise.

    Readers see the old folder or the complete new one: never a partial model.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as exc:
        raise EngineError(f"{out_dir}: cannot write there ({exc.strerror or exc})") from None
    try:
        try:
            yield tmp
            # mkdtemp makes the folder private (0700), and transformers saves the weights 0600: a model folder is
            # an ordinary folder, readable like the files beside it.
            tmp.chmod(0o755)
            for path in tmp.iterdir():
                if path.is_file():
                    path.chmod(0o644)
            _replace_folder(tmp, out_dir)
        except OSError as exc:
            raise EngineError(f"{out_dir}: could not write the converted model ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_folder(new: Path, target: Path) -> None:
    """Rename `new` to `target`. An empty target is replaced by one rename; a full one is moved aside first."""
    try:
        os.replace(new, target)
        return
    except OSError:
        if not target.is_dir():
            raise
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / target.name, target)  # put the previous folder back
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _read_marker(out_dir: Path) -> str | None:
    try:
        return (out_dir / DONE_MARKER).read_text(encoding="utf-8")
    except OSError:
        return None


def _add_legacy_rope_theta(config_path: Path) -> None:
    """transformers 5 writes `rope_parameters.rope_theta`; mlx-lm (and transformers 4) read `rope_theta`."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    theta = (config.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and "rope_theta" not in config:
        config["rope_theta"] = theta
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
