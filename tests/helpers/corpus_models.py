"""The special tokens each corpus template expects, as the model cards document them (the corpus holds templates only).

Ids are given where the stop tests need them (Llama 3 and gpt-oss, per ../shared/corpus/README.md).
"""

from __future__ import annotations

from pathlib import Path

from helpers.paths import CORPUS, SMOLLM2_DIR

LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
LLAMA3_IDS = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|eom_id|>": 128008, "<|eot_id|>": 128009,
              "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|python_tag|>": 128010}
HARMONY_IDS = {"<|startoftext|>": 199998, "<|endoftext|>": 199999, "<|return|>": 200002, "<|constrain|>": 200003,
               "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007, "<|message|>": 200008, "<|call|>": 200012}

# file stem -> special tokens map
SPECIAL_TOKENS = {
    "meta-llama-Llama-3.1-8B-Instruct": LLAMA3,
    "meta-llama-Llama-3.2-3B-Instruct": LLAMA3,
    "meetkai-functionary-medium-v3.2": LLAMA3,
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"},
    "Qwen-Qwen2.5-7B-Instruct": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "Qwen-Qwen3-0.6B": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
    "google-gemma-2-2b-it": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
    "openai-gpt-oss-120b": {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"},
    "mistralai-Mistral-Nemo-Instruct-2407": {"bos_token": "<s>", "eos_token": "</s>"},
    "microsoft-Phi-3.5-mini-instruct": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
    "CohereForAI-c4ai-command-r-plus-tool_use": {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>"},
    "ibm-granite-granite-3.3-2B-Instruct": {"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"},
    "moonshotai-Kimi-K2": {"bos_token": "[BOS]", "eos_token": "[EOS]"},
}
DEFAULT_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}


def template_files() -> list[Path]:
    """Every real template: the corpus (official and community) and the shared model folders."""
    files = sorted((CORPUS / "templates").glob("*.jinja")) + sorted((CORPUS / "community" / "chat_templates").glob("*.jinja"))
    files += sorted(SMOLLM2_DIR.parent.glob("*/chat_template.jinja"))
    return files


def special_tokens_for(path: Path) -> dict[str, str]:
    if path.name == "chat_template.jinja":
        return {}  # a model folder: its tokenizer_config.json has them
    return dict(SPECIAL_TOKENS.get(path.stem, DEFAULT_SPECIAL))


def template_id(path: Path) -> str:
    return path.parent.name if path.name == "chat_template.jinja" else path.stem


def corpus_spec(file: str, tokenizer: object = None) -> "turnspec.ModelSpec":
    """A spec for a corpus template with the special tokens its model card documents (skips without ../shared)."""
    import turnspec
    from helpers.paths import need

    path = need(CORPUS / "templates" / file)
    return turnspec.from_template(path.read_text(encoding="utf-8"), name=path.stem,
                                  special_tokens=special_tokens_for(path), tokenizer=tokenizer)
