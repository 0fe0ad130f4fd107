"""Build a Hugging Face `tokenizers.Tokenizer` from the vocabulary stored in a GGUF file.

The goal is llama.cpp's token ids, since llama.cpp is what runs the GGUF: the pre-tokenizer regexes are the
ones `llama-vocab.cpp` picks for `tokenizer.ggml.pre`, and SentencePiece vocabularies get llama.cpp's space
prefix (one `▁` in front of every text fragment, also after a special token). Supported models:

- "gpt2": byte-level BPE from `tokens` + `merges`;
- "llama": SentencePiece BPE from `tokens` + `scores`, with `<0xNN>` byte fallback.

Control and unknown-typed tokens become special added tokens, user-defined ones plain added tokens, so both
are matched whole before the model splits the rest (llama.cpp's `tokenize(..., special=True)`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ModelSourceError

# tokenizer.ggml.token_type values (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

SUPPORTED_MODELS = ("gpt2", "llama")

# Regexes from llama.cpp's llm_tokenizer_bpe, applied one after the other; each isolates its matches.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+" + _CONTRACTIONS + "?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*" + _CONTRACTIONS + "?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BLOOM = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
# llama.cpp runs regexes without \p{..} classes on text whose non-ASCII whitespace became "\x0b": such a space
# then matches only \s, never a literal range. The ranges below are written without those codepoints to agree.
_UNICODE_SPACES = (0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)


def _ranges(*spans: tuple[int, int]) -> str:
    """A character-class body covering `spans` except non-ASCII whitespace (see _UNICODE_SPACES)."""
    out = []
    for lo, hi in spans:
        for space in sorted(c for c in _UNICODE_SPACES if lo <= c <= hi):
            if lo < space:
                out.append(f"{chr(lo)}-{chr(space - 1)}")
            lo = space + 1
        if lo <= hi:
            out.append(f"{chr(lo)}-{chr(hi)}")
    return "".join(out)


_CJK = "[" + _ranges((0x4E00, 0x9FA5), (0x0800, 0x4E00), (0xAC00, 0xD7FF)) + "]+"
_DEEPSEEK_LLM_LETTERS = (
    "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377"
    "\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556"
    "\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a"
    "\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4"
    "\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b"
    "\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
_DEEPSEEK_LLM_PUNCT = "\\s?[!-/:-~" + _ranges((0xFF01, 0xFF0F), (0xFF1A, 0xFF5E), (0x2018, 0x201F), (0x3000, 0x3002)) + "]+"

_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]")
_STARCODER = (r"\p{N}", _GPT2)

# tokenizer.ggml.pre -> (regexes, ignore_merges), for the names llama_vocab::impl::load (llama-vocab.cpp) knows.
# gpt-4o/llama4 differ from llama.cpp when a combining mark precedes a contraction ("á's" written as a + U+0301).
PRE_TOKENIZERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "default": (_DEFAULT, False),
    "falcon": ((r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]"), False),
    "deepseek-llm": (("[\r\n]", _DEEPSEEK_LLM_LETTERS, _DEEPSEEK_LLM_PUNCT, r"\s+$", _CJK, r"\p{N}+"), False),
    "deepseek-coder": (("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"), False),
    **{name: ((_LLAMA3,), True) for name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral")},
    **{name: ((_LLAMA3,), False) for name in ("dbrx", "smaug-bpe", "chatglm-bpe", "glm4")},
    **{name: (_STARCODER, False) for name in (
        "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b")},
    # GPT-NeoX GGUFs carry no tokenizer.ggml.pre, which llama.cpp (and this table) reads as "default".
    **{name: ((_GPT2,), False) for name in (
        "gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "jina-v1-en",
        "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "gigachat")},
    **{name: ((_QWEN2,), False) for name in ("qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan")},
    **{name: ((_BLOOM,), False) for name in ("bloom", "poro-chat", "gpt3-finnish")},
    "viking": ((_BLOOM, r"\p{N}"), False),
    "tekken": ((_TEKKEN,), True),
    "gpt-4o": ((_GPT4O,), False),
    "llama4": ((_GPT4O,), False),
}

# Pre-tokenizer names for which llama.cpp adds BOS when the GGUF has no tokenizer.ggml.add_bos_token.
_ADD_BOS_PRE = frozenset({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "tekken"})


def pre_tokenizer_regexes(pre: str | None) -> tuple[tuple[str, ...], bool]:
    """Regexes and ignore_merges for a `tokenizer.ggml.pre` value; missing means llama.cpp's "default".

    An unknown name (llama.cpp refuses those) falls back to the gpt2 regex with a warning.
    """
    if not pre:
        return PRE_TOKENIZERS["default"]
    if pre in PRE_TOKENIZERS:
        return PRE_TOKENIZERS[pre]
    warnings.warn(f"GGUF pre-tokenizer {pre!r} is unknown to turnspec; splitting text like gpt2, so token ids "
                  "may differ from llama.cpp's", stacklevel=3)
    return (_GPT2,), False


def tokenizer_from_gguf(reader_or_fields: Any) -> Any:
    """A `tokenizers.Tokenizer` equivalent to llama.cpp's for a GGUF vocabulary.

    Accepts turnspec's `GGUFMetadata`, a `gguf.GGUFReader`, a path, or any mapping of GGUF keys to plain values.
    Raises ModelSourceError for vocabularies other than gpt2 (byte-level BPE) and llama (SentencePiece).
    """
    fields = _as_fields(reader_or_fields)
    where = _where(fields)
    model = fields.get("tokenizer.ggml.model")
    if model not in SUPPORTED_MODELS:
        raise ModelSourceError(
            f"{where}: GGUF tokenizer model {model!r} is not supported (turnspec converts gpt2 and llama "
            "vocabularies); pass a tokenizer.json folder instead"
        )
    tokens = fields.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ModelSourceError(f"{where}: the GGUF has no tokenizer.ggml.tokens; pass a tokenizer.json folder instead")
    types = fields.get("tokenizer.ggml.token_type")
    if not isinstance(types, list) or len(types) != len(tokens):
        types = [NORMAL] * len(tokens)
    try:
        tokenizer = _byte_level_bpe(fields, tokens) if model == "gpt2" else _sentencepiece_bpe(fields, tokens, types)
        _add_tokens(tokenizer, fields, tokens, types)
        _add_post_processor(tokenizer, fields, tokens, model)
    except ModelSourceError:
        raise
    except Exception as exc:  # tokenizers raises bare Exceptions on inconsistent vocabularies
        raise ModelSourceError(f"{where}: cannot build a tokenizer from the GGUF vocabulary ({exc}); "
                               "pass a tokenizer.json folder instead") from None
    return tokenizer


def _byte_level_bpe(fields: Mapping[str, Any], tokens: list[str]) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    regexes, ignore_merges = pre_tokenizer_regexes(fields.get("tokenizer.ggml.pre"))
    vocab = {tok: i for i, tok in enumerate(tokens)}  # a repeated string keeps its last id, as in llama.cpp
    merges = []
    for merge in fields.get("tokenizer.ggml.merges") or []:
        pos = merge.find(" ", 1)  # llama.cpp splits at the first space after the first character
        if pos < 0:
            continue
        left, right = merge[:pos], merge[pos + 1:]
        # tokenizers rejects merges whose parts or result are not tokens; llama.cpp cannot emit those either.
        if left in vocab and right in vocab and left + right in vocab:
            merges.append((left, right))
    tokenizer = Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
    steps = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    missing = [ch for ch in _byte_decoder() if ch not in vocab]
    if missing:
        # A byte with no token: llama.cpp emits nothing for it and merges nothing across it, while tokenizers' BPE
        # would drop it first and merge its neighbours. Removing it at pre-tokenization keeps it a boundary.
        steps.append(pre_tokenizers.Split(Regex("[" + "".join(_regex_escape(ch) for ch in missing) + "]"),
                                          behavior="removed"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece_bpe(fields: Mapping[str, Any], tokens: list[str], types: list[int]) -> Any:
    """SentencePiece BPE as llama.cpp runs it: merge the adjacent pair whose result scores highest.

    Expressed as BPE merges ranked by the merged token's score. The space prefix is a normalizer (not
    Metaspace) because llama.cpp, like sentencepiece, adds it even when the text already starts with a space.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers

    scores = fields.get("tokenizer.ggml.scores")
    if not isinstance(scores, list) or len(scores) != len(tokens):
        scores = [-float(i) for i in range(len(tokens))]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    candidates = []
    for token, token_id in vocab.items():
        score = scores[token_id]
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                candidates.append((-score, vocab[left], vocab[right], left, right))
    candidates.sort(key=lambda c: c[:3])
    merges = [(c[3], c[4]) for c in candidates]
    unk_id = fields.get("tokenizer.ggml.unknown_token_id", 0)
    unk = tokens[unk_id] if isinstance(unk_id, int) and 0 <= unk_id < len(tokens) else None
    has_bytes = any(t == BYTE for t in types) or "<0x00>" in vocab
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=has_bytes))
    space_prefix = fields.get("tokenizer.ggml.add_space_prefix", True) is not False
    replace = normalizers.Replace(" ", "\u2581")
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), replace]) if space_prefix else replace
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if space_prefix else []))
    return tokenizer


def _add_tokens(tokenizer: Any, fields: Mapping[str, Any], tokens: list[str], types: list[int]) -> None:
    """Control/unknown tokens -> special added tokens; user-defined -> plain added tokens; all matched raw."""
    from tokenizers import AddedToken

    # llama.cpp strips spaces after Phi-3's special tokens (set by model name in llama-vocab.cpp), as HF does.
    name = str(fields.get("general.name") or "").lower()
    phi3 = "phi-3" in name or "phi3" in name
    special, plain = [], []
    for token, token_type in zip(tokens, types):
        if token_type in (CONTROL, UNKNOWN, USER_DEFINED) and token:
            rstrip = phi3 and token not in ("<unk>", "<s>", "<|endoftext|>")
            added = AddedToken(token, special=token_type != USER_DEFINED, normalized=False, rstrip=rstrip)
            (plain if token_type == USER_DEFINED else special).append(added)
    if special:
        tokenizer.add_special_tokens(special)
    if plain:
        tokenizer.add_tokens(plain)


def _add_post_processor(tokenizer: Any, fields: Mapping[str, Any], tokens: list[str], model: str) -> None:
    """BOS/EOS for encode(add_special_tokens=True), from add_bos_token/add_eos_token (llama.cpp's defaults)."""
    from tokenizers import processors

    single: list[str] = ["$A"]
    special: dict[str, int] = {}
    bos_default = model == "llama" or fields.get("tokenizer.ggml.pre") in _ADD_BOS_PRE
    wanted = ((fields.get("tokenizer.ggml.add_bos_token", bos_default), "tokenizer.ggml.bos_token_id", 0),
              (fields.get("tokenizer.ggml.add_eos_token", False), "tokenizer.ggml.eos_token_id", None))
    for flag, key, position in wanted:
        token_id = fields.get(key)
        if flag is True and isinstance(token_id, int) and 0 <= token_id < len(tokens):
            single.insert(0 if position == 0 else len(single), tokens[token_id])
            special[tokens[token_id]] = token_id
    if special:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=single + ["$B:1"], special_tokens=list(special.items()))


def token_text(fields: Mapping[str, Any], token_id: int) -> str | None:
    """The text llama.cpp prints for one token id: byte-level/`▁` spelling undone for normal tokens.

    Control tokens come back as stored (`<|im_end|>`). Reads one vocabulary entry when `fields` is a GGUFMetadata.
    """
    string_at = getattr(fields, "string_at", None)
    if string_at is not None:
        text = string_at("tokenizer.ggml.tokens", token_id)
    else:
        tokens = fields.get("tokenizer.ggml.tokens")
        text = tokens[token_id] if isinstance(tokens, list) and 0 <= token_id < len(tokens) else None
    if not isinstance(text, str):
        return None
    types = fields.get("tokenizer.ggml.token_type")
    token_type = types[token_id] if isinstance(types, list) and token_id < len(types) else NORMAL
    if token_type != NORMAL:
        return text
    model = fields.get("tokenizer.ggml.model")
    if model == "gpt2":
        return _byte_level_decode(text)
    if model == "llama":
        return text.replace("\u2581", " ")
    return text


def _byte_level_decode(text: str) -> str:
    table = _byte_decoder()
    if not all(ch in table for ch in text):
        return text
    return bytes(table[ch] for ch in text).decode("utf-8", errors="replace")


_BYTE_DECODER: dict[str, int] = {}


def _byte_decoder() -> dict[str, int]:
    """GPT-2's bytes_to_unicode table, reversed: printable bytes map to themselves, the rest above U+0100."""
    if not _BYTE_DECODER:
        printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
        extra = 0
        for byte in range(256):
            if byte in printable:
                _BYTE_DECODER[chr(byte)] = byte
            else:
                _BYTE_DECODER[chr(256 + extra)] = byte
                extra += 1
    return _BYTE_DECODER


def _regex_escape(ch: str) -> str:
    return "\\x{%x}" % ord(ch)


def _as_fields(source: Any) -> Mapping[str, Any]:
    if isinstance(source, (str, Path)):
        from .gguf_header import read_gguf_metadata  # imports the gguf package: only when given a path

        return read_gguf_metadata(Path(source))
    reader_fields = getattr(source, "fields", None)
    if reader_fields is not None and hasattr(source, "tensors"):  # gguf.GGUFReader
        return {key: field.contents() for key, field in reader_fields.items()
                if key.startswith("tokenizer.ggml.") or key == "general.name"}
    if isinstance(source, Mapping):
        return source
    raise TypeError(f"tokenizer_from_gguf takes a GGUFMetadata, a gguf.GGUFReader, a path or a mapping, "
                    f"not {type(source).__name__}")


def _where(fields: Mapping[str, Any]) -> str:
    path = getattr(fields, "path", None)
    if path is not None:
        return str(path)
    name = fields.get("general.name")
    return f"GGUF model {name!r}" if isinstance(name, str) else "GGUF vocabulary"
