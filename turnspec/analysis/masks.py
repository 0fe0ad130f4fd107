"""Mask facts: whether turnspec's assistant masks can be read by structure on this template, and whether the
universal (prompt-aligned) mask is exact, learned by rendering plain conversations through the analysis's Prober.

encoding reads the verdicts (`TemplateAnalysis.mask_by_header`, `.universal_mask`); it does not probe.
"""

from __future__ import annotations

from typing import Any

from ..errors import TemplateError
from .probes import CONTENT, CONTENT_2, REASONING, USER_2, Prober, assistant, user

#: Plain conversations of the shapes SFT data has: a system prompt or not, one or several exchanges, a conversation
#: that ends with a user turn, texts with surrounding whitespace and line breaks (templates trim them, or not).
MASK_PROBES = (
    [("user", "tsu_a x"), ("assistant", "tsc_b x")],
    [("system", "tss_c x"), ("user", "tsu_d x"), ("assistant", "tsc_e x")],
    [("user", "tsu_f x"), ("assistant", "tsc_g x"), ("user", "tsu_h x"), ("assistant", "tsc_i x")],
    [("system", "tss_j x"), ("user", " tsu_k x\n"), ("assistant", "\ntsc_l\n\n x "), ("user", "tsu_m x"),
     ("assistant", "tsc_n x"), ("user", "tsu_o x"), ("assistant", "tsc_p x")],
    [("user", "tsu_q x"), ("assistant", "tsc_r x"), ("user", "tsu_s x")],
)


def learn_mask_by_header(prober: Prober, analysis: Any) -> bool:
    """Whether finding the assistant header gives the same mask as aligning with each turn's prompt, on every
    probe shape the template renders (at least three of them), with exact masks."""
    from ..encoding import _spans, spans_by_header

    spec = prober.spec
    markup = spec.markup
    if prober.base or not analysis.assistant_header.strip() or not analysis.turn_ends:
        return False  # a template that needs values for plain conversations is read by alignment
    if any(not markup.spans(e) or markup.spans(e)[0].text != e for e in (*analysis.turn_ends, *analysis.history_turn_ends)):
        return False  # a plain-text turn end could be in a message's text
    rendered = 0
    try:
        for probe in MASK_PROBES:
            messages = [{"role": r, "content": c} for r, c in probe]
            text, _ = prober.attempt(messages)
            if text is None:
                continue  # a shape the template refuses (Gemma-2: no system role)
            for prompt_supplied in (True, False):
                slow = _spans(spec, messages, text, {}, mask_prompt_supplied=prompt_supplied)
                fast = spans_by_header(spec, messages, text, mask_prompt_supplied=prompt_supplied)
                if not slow[1] or slow[0] != fast:
                    return False
            rendered += 1
    except TemplateError as exc:
        if not exc.limit:
            raise
        return False  # a template that runs past the limits is read by alignment (and says so there)
    return rendered >= 3


def mask_conversations(reasoning_kind: str) -> dict[str, list[dict[str, Any]]]:
    """The conversations the universal assistant mask is checked on (with reasoning when the template has some)."""
    convs = {"plain": [user(), assistant(CONTENT), user(USER_2), assistant(CONTENT_2)]}
    if reasoning_kind != "none":
        convs["with reasoning"] = [user(), assistant(CONTENT, reasoning=REASONING), user(USER_2),
                                   assistant(CONTENT_2, reasoning=REASONING + "_2")]
    return convs


def learn_universal_mask(prober: Prober, reasoning_kind: str) -> tuple[bool, tuple[str, ...]]:
    """(whether the universal assistant mask is exact on the probe conversations, what is not, per conversation)."""
    from ..encoding import universal_spans

    exact, notes = True, []
    for label, conv in mask_conversations(reasoning_kind).items():
        full = prober.render(conv)
        _spans, ok, conv_notes = universal_spans(prober.spec, conv, full, dict(prober.base))
        exact = exact and ok
        notes += [f"{label}: {n}" for n in conv_notes]
    return exact, tuple(notes)
