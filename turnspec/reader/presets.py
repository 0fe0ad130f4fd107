"""Call syntaxes by family name, for readers configured by hand (`StreamReader(call_format="hermes")`).

A spec's reader never uses these: it reads the syntax its template analysis learned. They are the same data the
analysis produces for those families' templates, written out, so tests and callers without a template can name
a family. The one rule here that no rendering shows is Llama 3's `<|python_tag|>` followed by raw code (the code
interpreter), which Meta's model card documents; it is read as a call to `python` with `{"code": ...}`.
"""

from __future__ import annotations

from ..analysis.syntax import ID, CallSyntax, ChannelSyntax
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
PRESETS: dict[str, tuple[CallSyntax, ...]] = {"none": (), "hermes": HERMES, "llama3": LLAMA3, "mistral": MISTRAL}

#: Triggers after which text that is not a call is code for a `python` tool (Llama 3's code interpreter).
CODE_TRIGGERS = ("<|python_tag|>",)

#: Channel formats by name (`StreamReader(reasoning="harmony")`): the same data a gpt-oss template's analysis learns.
CHANNEL_PRESETS: dict[str, ChannelSyntax] = {"harmony": HARMONY}
