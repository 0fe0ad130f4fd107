"""Which output format a model speaks, read from its chat template and vocabulary — never from its name.

The rules are plain data below, checked against the real templates in ../shared/corpus:

reasoning
    harmony   the template writes `<|channel|>` and `<|message|>` (gpt-oss)
    think     the template mentions `<think>` (Qwen3, QwQ, DeepSeek-R1 and distills, Granite 3.3)
    none      otherwise
tools (first rule that matches)
    harmony   reasoning is harmony (`to=functions.NAME … <|call|>`)
    hermes    the template writes `<tool_call>` (Hermes-2-Pro, Qwen2.5, Qwen3)
    mistral   `[TOOL_CALLS]` in the template or the vocabulary (Mistral-Nemo, Mistral v0.3+)
    llama3    `<|python_tag|>` in the template, or a Llama-3 header template whose vocabulary has it, or a
              Llama-3 template that asks for `"parameters"` JSON (Llama-3.1/3.2/3.3)
    none      otherwise
turn headers (self-conversation guard)
    For each turn-start literal the template uses, the headers of every role the model must not write:
    `<|im_start|>user`, `<|start_header_id|>user`, `<start_of_turn>user`, `[INST]`, `<｜User｜>`, …
    Harmony's own `<|start|>assistant` is excluded: a gpt-oss turn holds several assistant messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import harmony

#: Turn-start literals followed by the role's name.
ROLE_PREFIXED_STARTS = (
    "<|im_start|>",  # ChatML: Qwen, SmolLM, Hermes
    "<|start_header_id|>",  # Llama 3.x
    "<start_of_turn>",  # Gemma
    "<|start|>",  # Harmony
    "<|start_of_role|>",  # Granite
)
#: Roles whose header, written by the model, means it is writing the next turn itself.
GUARD_ROLES = ("user", "system", "tool", "ipython", "developer", "assistant", "model")
#: Headers with the role baked into the token(s); a header is used when the template writes it.
STANDALONE_HEADERS = (
    "[INST]",  # Mistral, Llama 2
    "<｜User｜>",  # DeepSeek-R1 (full-width bars)
    "<｜Assistant｜>",
    "<|user|>",  # Phi-3
    "<|system|>",
    "<|assistant|>",
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>",  # Command-R
    "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>",
    "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    "<|im_user|>",  # Kimi K2
    "<|im_system|>",
    "<|im_assistant|>",
)
#: Extra Harmony headers: the model must not write a tool's answer itself.
HARMONY_EXTRA_HEADERS = ("<|start|>functions.",)

THINK_TAGS = ("<think>", "</think>")


@dataclass(frozen=True)
class OutputFormat:
    reasoning: str
    tools: str
    turn_headers: tuple[str, ...]


def detect_reasoning(template: str) -> str:
    if harmony.CHANNEL in template and harmony.MESSAGE in template:
        return "harmony"
    if THINK_TAGS[0] in template:
        return "think"
    return "none"


def detect_tools(template: str, added_tokens: Iterable[str] = (), reasoning: str | None = None) -> str:
    added = set(added_tokens)
    if (reasoning or detect_reasoning(template)) == "harmony":
        return "harmony"
    if "<tool_call>" in template:
        return "hermes"
    if "[TOOL_CALLS]" in template or "[TOOL_CALLS]" in added:
        return "mistral"
    llama3_headers = "<|start_header_id|>" in template
    if "<|python_tag|>" in template or (
        llama3_headers and ("<|python_tag|>" in added or '"parameters"' in template)
    ):
        return "llama3"
    return "none"


def turn_headers(template: str, reasoning: str | None = None) -> tuple[str, ...]:
    """Next-turn headers to stop on, derived from the turn-start literals the template contains."""
    is_harmony = (reasoning or detect_reasoning(template)) == "harmony"
    headers: list[str] = []
    for start in ROLE_PREFIXED_STARTS:
        if start in template:
            for role in GUARD_ROLES:
                if is_harmony and start == harmony.START and role == "assistant":
                    continue
                headers.append(start + role)
            if is_harmony and start == harmony.START:
                headers.extend(HARMONY_EXTRA_HEADERS)
    headers.extend(h for h in STANDALONE_HEADERS if h in template)
    return tuple(dict.fromkeys(headers))


def detect(template: str, added_tokens: Iterable[str] = ()) -> OutputFormat:
    reasoning = detect_reasoning(template)
    return OutputFormat(reasoning, detect_tools(template, added_tokens, reasoning), turn_headers(template, reasoning))


def generation_tail(prompt_text: str) -> str:
    """The prompt after its last turn start: the generation prompt the output continues."""
    cut = 0
    for start in ROLE_PREFIXED_STARTS + STANDALONE_HEADERS:
        i = prompt_text.rfind(start)
        if i >= 0:
            cut = max(cut, i)
    return prompt_text[cut:]


def prompt_opens_think(prompt_text: str, tags: tuple[str, str] = THINK_TAGS) -> bool:
    """True when the generation prompt ends inside an unclosed `<think>` (the output starts in reasoning)."""
    tail = generation_tail(prompt_text)
    i = tail.rfind(tags[0])
    return i >= 0 and tail.find(tags[1], i) < 0


def harmony_prefix(prompt_text: str) -> str:
    """The Harmony message the prompt leaves open (`<|start|>assistant`, or `…<|channel|>final<|message|>`)."""
    i = prompt_text.rfind(harmony.START)
    if i < 0:
        return ""
    tail = prompt_text[i:]
    if any(t in tail for t in (harmony.END, *harmony.TURN_END)):
        return ""
    return tail
