"""A model's files as a whole: which weight format they are, and whether every shard is there.

Shards are named `<stem>-00002-of-00005.safetensors` / `.gguf`; a safetensors index
(`model.safetensors.index.json`) lists the files its weight map needs. Both are checked, so a download that
stopped between shards is reported instead of failing when an engine loads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

SHARD = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.(?P<ext>safetensors|gguf)$", re.IGNORECASE)
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_WEIGHTS = re.compile(r"^pytorch_model(-\d{5}-of-\d{5})?\.bin$")


def weights_format(names: Iterable[str]) -> str:
    """"safetensors", "pytorch", "gguf", or "tokenizer-only" for a set of relative file names (GGUF last: a repo
    with both is listed once for its safetensors and once per GGUF)."""
    names = list(names)
    base = [n.rsplit("/", 1)[-1] for n in names]
    if any(n.endswith(".safetensors") for n in base):
        return "safetensors"
    if any(PYTORCH_WEIGHTS.match(n) for n in base):
        return "pytorch"
    if any(n.lower().endswith(".gguf") for n in base):
        return "gguf"
    return "tokenizer-only"


def is_first_shard_or_single(name: str) -> bool:
    m = SHARD.match(name.rsplit("/", 1)[-1])
    return m is None or int(m.group("index")) == 1


def shard_names(name: str) -> list[str]:
    """Every shard name of the split file `name` (itself alone when it is not split)."""
    folder, _, base = name.rpartition("/")
    m = SHARD.match(base)
    if m is None:
        return [name]
    total = int(m.group("total"))
    prefix = f"{folder}/" if folder else ""
    return [f"{prefix}{m.group('stem')}-{i:05d}-of-{total:05d}.{m.group('ext')}" for i in range(1, total + 1)]


def missing_files(folder: Path, names: Iterable[str]) -> list[str]:
    """The shards and index-listed weight files that `names` (the files present in `folder`) lacks."""
    present = set(names)
    missing: set[str] = set()
    for name in present:
        if SHARD.match(name.rsplit("/", 1)[-1]):
            missing.update(n for n in shard_names(name) if n not in present)
    if SAFETENSORS_INDEX in present:
        try:
            weight_map = json.loads((folder / SAFETENSORS_INDEX).read_text(encoding="utf-8")).get("weight_map") or {}
            missing.update(n for n in set(weight_map.values()) if isinstance(n, str) and n not in present)
        except (OSError, ValueError, AttributeError):
            missing.add(f"{SAFETENSORS_INDEX} (unreadable)")
    return sorted(missing)


def human_size(n: int | None) -> str:
    """Decimal units, as the Hub and other local model tools show them (1 GB = 10^9 bytes)."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
