"""Constrained decoding in the model's own syntax: forced tool calls and JSON answers.

    constraint = plan(spec, prompt_text, tools=tools, tool_choice="required")     # None when nothing is forced
    engine.generate(ids, ..., constraint=constraint)                              # llama.cpp: GBNF; others: llguidance

`plan` reads the template analysis (how this template writes calls, its reasoning and content markers) and
builds a small grammar tree (grammar.py); the engines compile it with their library (gbnf.py for llama.cpp's
grammars, lark.py for llguidance) and follow its phases (free reasoning, then the grammar). Nothing here imports
an engine or a grammar library until a constraint is compiled.
"""

from __future__ import annotations

from .plan import Constraint, ConstraintState, plan
from .schema import ConstraintError

__all__ = ["Constraint", "ConstraintError", "ConstraintState", "check", "plan"]


def check(constraint: Constraint, backend: str | None) -> None:
    """Raise ConstraintError when `backend` ("gbnf", "llguidance", None) cannot enforce `constraint` exactly."""
    if backend is None:
        raise ConstraintError("this engine cannot constrain generation (no grammar support): use the llamacpp or "
                              "transformers engine for tool_choice and response_format",
                              param="response_format" if constraint.kind == "json" else "tool_choice")
    if backend == "gbnf":
        from .schema import unsupported_keyword

        for where, schema in constraint.schemas:
            found = unsupported_keyword(schema)
            if found:
                raise ConstraintError(f"{where}: {found} is not supported by llama.cpp's JSON-schema grammar "
                                      "converter; remove it or use the transformers engine",
                                      param="response_format" if constraint.kind == "json" else "tools")
        return
    from .guidance import control_tokens, validate

    vocab = constraint.vocab
    validate(constraint, control_tokens(vocab) if vocab is not None else {})
