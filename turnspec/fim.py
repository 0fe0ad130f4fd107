"""Fill-in-the-middle: the prompt layout a code model was trained with, found from the FIM tokens its vocabulary
holds (never from its name).

Each known family names its three control tokens and their order: PSM (prefix, suffix, then the model writes the
middle) for StarCoder, Qwen-Coder, DeepSeek-Coder and CodeLlama; SPM for Codestral (`[SUFFIX]…[PREFIX]…`). The
prompt is assembled from token ids, so text that merely spells a control token can never become one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FimFormat:
    name: str
    prefix: str
    suffix: str
    middle: str | None  # None: the prompt ends after the prefix (SPM, Codestral)
    order: str  # "psm" | "spm"
    ends: tuple[str, ...] = ()  # tokens that end a middle besides the model's stop set (file/repo separators, pad)

    def encode(self, vocab: Any, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        """The FIM prompt around already-tokenized prefix and suffix."""
        pre, suf = vocab.token_to_id(self.prefix), vocab.token_to_id(self.suffix)
        mid = [vocab.token_to_id(self.middle)] if self.middle else []
        if self.order == "spm":
            return [suf, *suffix_ids, pre, *prefix_ids, *mid]
        return [pre, *prefix_ids, suf, *suffix_ids, *mid]

    def end_ids(self, vocab: Any) -> frozenset[int]:
        return frozenset(i for i in (vocab.token_to_id(t) for t in self.ends) if i is not None)


FORMATS = (
    FimFormat("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "psm",
              ("<fim_pad>", "<file_sep>", "<repo_name>", "<filename>", "<|endoftext|>")),
    FimFormat("qwen-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "psm",
              ("<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|endoftext|>")),
    FimFormat("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "psm", ("<｜end▁of▁sentence｜>",)),
    FimFormat("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", "psm", ("▁<EOT>",)),
    FimFormat("codestral", "[PREFIX]", "[SUFFIX]", None, "spm", ()),
)


def fim_format(vocab: Any) -> FimFormat | None:
    """The FIM layout whose control tokens are all in `vocab` (a turnspec Vocabulary), else None."""
    if vocab is None:
        return None
    for fmt in FORMATS:
        needed = [fmt.prefix, fmt.suffix] + ([fmt.middle] if fmt.middle else [])
        if all(vocab.token_to_id(t) is not None for t in needed):
            return fmt
    return None
