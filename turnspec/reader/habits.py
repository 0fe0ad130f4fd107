"""Model habits that no rendering of a template shows, as one table of data attached to call syntaxes.

A spec's reader reads the syntax its template analysis learned; this table adds only what models are documented
or observed to write beyond it, each entry saying what it attaches to:

- `FAMILIES`: call syntaxes by family name, for readers configured by hand (`StreamReader(call_format="hermes")`)
  and tests without a template. They are the same data the analysis produces for those families' templates.
- `CODE_AFTER`: a trigger after which text that is not a call is code for a built-in tool (Llama 3's
  `<|python_tag|>` followed by raw code, as Meta's model card documents): attached to any call syntax with that
  trigger, whatever the model's name.
- `LOOSE_FORMS`: call forms small models write inside their answer whatever their template says; read only for a
  declared tool's name (reader/content.py), and never where the template's own syntax starts with the same opener.
- `SAME_TRIGGER_FORMS`: call syntaxes models write behind another template's trigger (Qwen3.5 and Qwen3-Coder's
  XML-style parameters inside Qwen3's `<tool_call>`): tried after the template's own syntax for that trigger, and
  read only when every call names a declared tool.
- `CHANNEL_FORMATS`: channel formats by name (`StreamReader(reasoning="harmony")`), the same data a gpt-oss
  template's analysis learns.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.syntax import ID, CallSyntax, ChannelSyntax, ParamSyntax
from ..formats.channels import HARMONY

HERMES = (CallSyntax("json", call_open=("<tool_call>\n",), call_close=("\n</tool_call>",), separator="\n",
                     triggers=("<tool_call>",)),)
LLAMA3 = (
    CallSyntax("json", json_args=("parameters",)),
    CallSyntax("pythonic", section_open="<|python_tag|>", triggers=("<|python_tag|>",), between=(".call",)),
    CallSyntax("json", section_open="<|python_tag|>", triggers=("<|python_tag|>",), json_args=("parameters",)),
)
MISTRAL = (
    CallSyntax("json", section_open="[TOOL_CALLS]", list_wrapped=True, triggers=("[TOOL_CALLS]",)),
    CallSyntax("tagged", call_open=("[TOOL_CALLS]",), between=("[CALL_ID]", ID, "[ARGS]"),
               triggers=("[TOOL_CALLS]",)),
    CallSyntax("tagged", call_open=("[TOOL_CALLS]",), between=("[ARGS]",), triggers=("[TOOL_CALLS]",)),
)
FAMILIES: dict[str, tuple[CallSyntax, ...]] = {"none": (), "hermes": HERMES, "llama3": LLAMA3, "mistral": MISTRAL}


@dataclass(frozen=True)
class CodeAfterTrigger:
    """After `trigger`, text that is not a call is code: read as a call to `tool` with `{argument: code}`."""

    trigger: str
    tool: str
    argument: str
    source: str


@dataclass(frozen=True)
class LooseForm:
    """A call form models write in their answer: `opener` … `close`, holding `body`."""

    opener: str
    close: str
    body: str
    seen_in: str


CODE_AFTER: dict[str, CodeAfterTrigger] = {h.trigger: h for h in (
    CodeAfterTrigger("<|python_tag|>", "python", "code", "Meta's Llama 3.1 model card (the code interpreter)"),
)}
LOOSE_FORMS: tuple[LooseForm, ...] = (
    LooseForm("<function=", "</function>", "the name in the opener, then a JSON object", "Llama 3.x, functionary"),
    LooseForm("<tool_call>", "</tool_call>", "a JSON call object", "Hermes-trained models on other templates"),
    LooseForm("```", "```", "a JSON call object in a fence (```json)", "small models of every family"),
)
SAME_TRIGGER_FORMS: tuple[CallSyntax, ...] = (
    # what the Qwen3-Coder and Qwen3.5 templates' analysis learns
    CallSyntax("tagged", call_open=("<tool_call>\n<function=",), call_close=("\n</function>\n</tool_call>",),
               separator="\n", triggers=("<tool_call>", "<function="), between=(">",), args="params",
               params=ParamSyntax(key_prefix=("\n<parameter=",), key_suffix=(">\n",),
                                  value_suffix=("\n</parameter>",))),
)
CHANNEL_FORMATS: dict[str, ChannelSyntax] = {"harmony": HARMONY}
