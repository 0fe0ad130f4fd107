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
    from .limits import GBNF, LLGUIDANCE, check_bounds

    if backend == "gbnf":
        from .schema import unsupported_keyword

        check_bounds(list(constraint.prepared), GBNF, "llama.cpp's grammars")
        for where, schema in constraint.schemas:
            found = unsupported_keyword(schema)
            if found:
                raise ConstraintError(f"{where}: {found} is not supported by llama.cpp's JSON-schema grammar "
                                      "converter; remove it or use the transformers engine",
                                      param="response_format" if constraint.kind == "json" else "tools")
        _compile_gbnf(constraint)
        return
    check_bounds(list(constraint.prepared), LLGUIDANCE, "llguidance")
    from .guidance import control_tokens, validate

    vocab = constraint.vocab
    validate(constraint, control_tokens(vocab) if vocab is not None else {})


MAX_GBNF_BYTES = 2_000_000  # a last guard: the limits keep real grammars far below (20000 bounds: ~200 KB)


def _compile_gbnf(constraint: Constraint) -> None:
    """Write the grammar once before generation, so what llama-cpp-python's converter cannot convert (a pattern
    feature it lacks...) is a 400 naming it, not an error inside the engine after the request was accepted."""
    from .gbnf import to_gbnf

    param = "response_format" if constraint.kind == "json" else "tools"
    for where, schema in constraint.schemas:
        try:
            from .grammar import Json

            to_gbnf(Json.of(schema))
        except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise ConstraintError(f"{where}: llama.cpp's JSON-schema grammar converter cannot convert it: {detail}",
                                  param=param) from None
    for node in {constraint.start, constraint.resume}:
        text = to_gbnf(node)
        if len(text) > MAX_GBNF_BYTES:
            raise ConstraintError(f"the grammar for this request would take {len(text) // 1000} KB (at most "
                                  f"{MAX_GBNF_BYTES // 1000} KB): fewer tools, or smaller schemas", param=param)
