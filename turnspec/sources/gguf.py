"""A GGUF file as a model source: chat templates, special tokens and the vocabulary, read from its header.

The header itself is read by turnspec.gguf_header (fast, without tensor data); the vocabulary becomes a tokenizer
in turnspec.gguf_tokenizer. `tokenizer_from_gguf` accepts a `GGUFReader` too, for callers that already hold one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gguf import Keys

from ..gguf_header import GGUFHeaderIncomplete, GGUFMetadata, gguf_keys_from_prefix, read_gguf_metadata
from ..gguf_tokenizer import token_text, tokenizer_from_gguf
from .model_files import ModelFiles

__all__ = ["GGUFHeaderIncomplete", "GGUFMetadata", "chat_templates", "gguf_keys_from_prefix", "load_gguf",
           "read_gguf_metadata"]

# ModelFiles.special_tokens attribute -> GGUF key holding its id (llama.cpp spells "seperator").
SPECIAL_TOKEN_KEYS = {
    "bos_token": Keys.Tokenizer.BOS_ID,
    "eos_token": Keys.Tokenizer.EOS_ID,
    "unk_token": Keys.Tokenizer.UNK_ID,
    "pad_token": Keys.Tokenizer.PAD_ID,
    "sep_token": Keys.Tokenizer.SEP_ID,
    "cls_token": "tokenizer.ggml.cls_token_id",
    "mask_token": Keys.Tokenizer.MASK_ID,
}

# Keys whose ids end a generated turn, in the order they are listed in generation_config["eos_token_id"].
EOS_KEYS = (Keys.Tokenizer.EOS_ID, Keys.Tokenizer.EOT_ID, Keys.Tokenizer.EOM_ID, "tokenizer.ggml.eog_token_ids")

_TEMPLATE_PREFIX = Keys.Tokenizer.CHAT_TEMPLATE + "."


def load_gguf(path: Path) -> ModelFiles:
    """Read a GGUF's chat configuration; the vocabulary becomes a tokenizer only when `tokenizer_factory` runs.

    A GGUF without `tokenizer.chat_template` yields empty `templates` (the caller raises NoChatTemplateError).
    `generation_config["eos_token_id"]` lists the eos, eot and eom ids and `tokenizer.ggml.eog_token_ids`;
    `provenance["eos_token_id"]` says which key each id came from.
    """
    path = Path(path)
    meta = read_gguf_metadata(path)
    provenance: dict[str, str] = {}
    templates = _templates(meta, provenance)
    special = _special_tokens(meta)
    if special:
        provenance["special_tokens"] = "GGUF tokenizer.ggml.*_token_id"
    eos_ids, eos_sources = _eos_ids(meta)
    if eos_sources:
        provenance["eos_token_id"] = "; ".join(eos_sources)
    generation_config: dict[str, Any] = {"eos_token_id": eos_ids} if eos_ids else {}
    model = meta.get(Keys.Tokenizer.MODEL)
    if isinstance(model, str):
        pre = meta.get(Keys.Tokenizer.PRE)
        provenance["tokenizer"] = f"GGUF vocabulary (tokenizer.ggml.model={model}" + (f", pre={pre})" if pre else ")")
    add_bos = meta.get(Keys.Tokenizer.ADD_BOS)

    def build_tokenizer() -> Any:
        from ..tokenizer_cache import cached_tokenizer

        return cached_tokenizer(path, lambda: tokenizer_from_gguf(read_gguf_metadata(path)))

    return ModelFiles(
        name=_name(meta, path),
        origin="gguf",
        path=path,
        templates=templates,
        special_tokens=special,
        generation_config=generation_config,
        config=_config(meta),
        tokenizer_factory=build_tokenizer if isinstance(model, str) else None,
        provenance=provenance,
        add_bos_token=add_bos if isinstance(add_bos, bool) else None,
    )


def chat_templates(meta: GGUFMetadata) -> dict[str, str]:
    """The chat templates a GGUF header holds ("default" and named ones); empty for a base model."""
    return _templates(meta, {})


def _templates(meta: GGUFMetadata, provenance: dict[str, str]) -> dict[str, str]:
    """`tokenizer.chat_template` is "default"; named ones are `tokenizer.chat_template.<name>` (convert_hf_to_gguf)."""
    templates: dict[str, str] = {}
    default = meta.get(Keys.Tokenizer.CHAT_TEMPLATE)
    if isinstance(default, str):
        templates["default"] = default
    names = meta.get(Keys.Tokenizer.CHAT_TEMPLATES)
    listed = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    # The names list is authoritative, but a key present without it is still a template.
    listed += [k[len(_TEMPLATE_PREFIX):] for k in meta if k.startswith(_TEMPLATE_PREFIX)]
    for name in dict.fromkeys(listed):
        value = meta.get(_TEMPLATE_PREFIX + name)
        if isinstance(value, str) and name:
            templates[name] = value
    if templates:
        provenance["template"] = "GGUF " + Keys.Tokenizer.CHAT_TEMPLATE + (
            " (+ named tokenizer.chat_template.<name>)" if set(templates) - {"default"} else "")
    return templates


def _special_tokens(meta: GGUFMetadata) -> dict[str, str]:
    out: dict[str, str] = {}
    for attr, key in SPECIAL_TOKEN_KEYS.items():
        token_id = meta.get(key)
        if isinstance(token_id, int) and not isinstance(token_id, bool):
            text = token_text(meta, token_id)
            if text is not None:
                out[attr] = text
    return out


def _eos_ids(meta: GGUFMetadata) -> tuple[list[int], list[str]]:
    ids: list[int] = []
    sources: list[str] = []
    for key in EOS_KEYS:
        value = meta.get(key)
        found = value if isinstance(value, list) else [value]
        for token_id in found:
            if isinstance(token_id, int) and not isinstance(token_id, bool) and token_id not in ids:
                ids.append(token_id)
                sources.append(f"{token_id} from {key}")
    return ids, sources


def _name(meta: GGUFMetadata, path: Path) -> str:
    """`organization/file-stem` (HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1): the file name is what the user knows and
    one model's quantizations differ in behavior, while general.name is often a training-run label."""
    org = meta.get("general.organization")
    if isinstance(org, str) and org.strip() and "/" not in org.strip():
        return f"{org.strip()}/{path.stem}"
    return path.stem


def _config(meta: GGUFMetadata) -> dict[str, Any]:
    """Cheap model facts, under GGUF names and the config.json names other code expects."""
    config: dict[str, Any] = {}
    for key in ("general.name", "general.basename", "general.architecture", "general.size_label",
                "general.finetune", "general.organization", "general.license", "general.file_type",
                "general.quantization_version"):
        value = meta.get(key)
        if isinstance(value, (str, int, float)):
            config[key.removeprefix("general.")] = value
    arch = config.get("architecture")
    if isinstance(arch, str):
        config["model_type"] = arch
        ctx = meta.get(f"{arch}.context_length")
        if isinstance(ctx, int):
            config["context_length"] = config["max_position_embeddings"] = ctx
    n_tokens = meta.array_length(Keys.Tokenizer.LIST)
    if n_tokens is not None:
        config["vocab_size"] = n_tokens
    return config
