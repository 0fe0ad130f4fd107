"""How much memory a model takes once loaded, and how much the machine has, so a model swap that would not fit is
refused (HTTP 503) instead of pushing the machine into swap or the OOM killer.

The estimate is the weights as the engine holds them plus a KV cache for the whole context: llama.cpp maps the
GGUF as it is (f16 KV); transformers upcasts to float32 (turnspec's default dtype); MLX keeps the stored dtype.
Parameter counts come from the safetensors headers (a few kB each), layer shapes from config.json or the GGUF
header. It is an estimate: it errs on the large side by counting the full context.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}


def model_footprint(path: Path, engine: str, context_length: int, config: dict[str, Any]) -> int:
    """Bytes the model needs on `engine` with `context_length` tokens of KV cache."""
    path = Path(path)
    if path.suffix.lower() == ".gguf" or engine == "llamacpp":
        ggufs = [path] if path.is_file() else sorted(path.glob("*.gguf"))
        return sum(p.stat().st_size for p in ggufs) + kv_bytes(config, context_length, 2)
    params, stored = _safetensors_params(path)
    weights = params * 4 if engine == "transformers" else stored
    return weights + kv_bytes(config, context_length, 4 if engine == "transformers" else 2)


def kv_bytes(config: dict[str, Any], context_length: int, bytes_per_value: int) -> int:
    """Keys and values for every layer and position; 0 when the config does not say the shapes."""
    layers = _first_int(config, "num_hidden_layers", "block_count", "n_layer")
    hidden = _first_int(config, "hidden_size", "embedding_length", "n_embd")
    heads = _first_int(config, "num_attention_heads", "head_count", "n_head")
    kv_heads = _first_int(config, "num_key_value_heads", "head_count_kv") or heads
    if not (layers and hidden and heads and kv_heads):
        return 0
    head_dim = _first_int(config, "head_dim") or hidden // heads
    return 2 * layers * kv_heads * head_dim * context_length * bytes_per_value


def gguf_shape_config(path: Path) -> dict[str, Any]:
    """Layer count and attention shapes from a GGUF header, under their GGUF names."""
    from ..sources.gguf import read_gguf_metadata

    meta = read_gguf_metadata(path)
    arch = meta.get("general.architecture")
    out = {}
    for key in ("block_count", "embedding_length", "attention.head_count", "attention.head_count_kv"):
        value = meta.get(f"{arch}.{key}")
        if isinstance(value, int):
            out[key.removeprefix("attention.")] = value
    return out


def available_memory() -> int | None:
    """Bytes this process could still take: MemAvailable, capped by a cgroup (container) limit; None if unknown."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return min(found) if found else None


def parse_size(text: str) -> int:
    """"8GB", "512 MB", "1.5G", "1000000" -> bytes (decimal units, as `turnspec list` shows sizes)."""
    units = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
             "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = text.strip().upper().replace(" ", "")
    number = s.rstrip("KMGTIB")
    try:
        return int(float(number) * units[s[len(number):]])
    except (ValueError, KeyError):
        raise ValueError(f"{text!r}: not a size; write e.g. 8GB or 512MB") from None


def _safetensors_params(folder: Path) -> tuple[int, int]:
    """(parameter count, stored bytes) over the folder's safetensors files, from their headers only."""
    params = stored = 0
    for file in sorted(Path(folder).glob("*.safetensors")):
        try:
            with open(file, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error):
            stored += file.stat().st_size if file.exists() else 0
            continue
        for name, tensor in header.items():
            if name == "__metadata__" or not isinstance(tensor, dict):
                continue
            count = 1
            for dim in tensor.get("shape", []):
                count *= int(dim)
            params += count
            stored += count * DTYPE_BYTES.get(str(tensor.get("dtype")), 4)
    return params, stored


def _first_int(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
