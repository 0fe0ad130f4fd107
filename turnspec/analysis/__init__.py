"""Template analysis: how a chat template frames an assistant turn, learned by rendering probe conversations.

    analysis = spec.analysis                 # milliseconds once, then cached by the template's hash across loads
    analysis.reasoning.open, .close          # "<think>", "</think>"
    analysis.tools.calls[0].describe()       # '<tool_call>\\n{"name": "{name}", "arguments": {arguments}}\\n</tool_call>'
    analysis.turn_ends, analysis.guards      # what ends the turn; headers a model must never write
    analysis.system.mode, .default           # "replaces", "You are a helpful AI assistant named SmolLM, ..."
    analysis.roles, .bos, .continue_final_message, .generation   # more template facts (turnspec.analysis.facts)
    analysis.tool_use, .mask_by_header, .prefix   # learned on first use, with the same Prober, then kept

Nothing here looks at a model's name: sentinel messages are rendered and the renderings compared. The reader,
the stop set, the onboarding report, chat, the server and the masks read this one object; none probes on its
own. When something cannot be learned, the analysis says why (`tools.reason`, `reasoning.reason`, `notes`)
instead of guessing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import TemplateError, TurnspecError
from ..template import template_literals
from .cache import analyses, analysis_key, markups, template_key
from .markup import Markup, shaped_tokens
from .probes import CONTENT, REASONING, Prober, assistant, user
from .syntax import (CallSyntax, ContentSyntax, ParamSyntax, ReasoningSyntax, TemplateAnalysis, ToolSyntax,
                     show)

if TYPE_CHECKING:
    from ..speclike import SpecLike

__all__ = ["CallSyntax", "ContentSyntax", "ParamSyntax", "ReasoningSyntax", "TemplateAnalysis", "ToolSyntax",
           "analysis_for", "analyze", "markup_for", "shared_markup", "show"]


def analysis_for(spec: SpecLike) -> TemplateAnalysis:
    """The analysis of `spec`'s default template, shared by every spec with the same template, special tokens,
    control tokens and limits (turnspec.analysis.cache): re-loading a model does not re-analyse it."""
    return analyses.get(analysis_key(spec), lambda: analyze(spec))


def shared_markup(spec: SpecLike) -> Markup:
    """`markup_for(spec)`, shared by every spec with the same template and tokens (turnspec.analysis.cache)."""
    return markups.get(template_key(spec), lambda: markup_for(spec))


def markup_for(spec: SpecLike) -> Markup:
    """Control tokens of the spec (vocabulary specials and added tokens the template writes) plus token-shaped
    strings in the template's own text."""
    template = spec.select_template()
    try:
        tokens = set(spec.control_tokens())
    except TurnspecError:
        tokens = set(spec.special_tokens.values())
    tokens |= shaped_tokens(template_literals(template))
    return Markup(tokens)


def analyze(spec: SpecLike) -> TemplateAnalysis:
    """Run every probe on `spec`'s default template. Never raises for a template's own failures: see `.error`."""
    from .calls import learn_tools
    from .channels import learn_channels
    from .reasoning import learn_reasoning
    from .turn import (AnalysisError, eos_after_every_rendering, history_turn_end, learn_content, learn_guards,
                       learn_turn, plain_turn_end, tokens_before_answer, turn_end_after_answer)

    t0 = time.perf_counter()
    sha = spec.template_sha256
    markup = spec.markup  # the same object the reader and the masks use
    prober = Prober(spec)
    notes: list[str] = []
    known: dict[str, Any] = {}  # facts learned so far: an analysis that fails later keeps them
    try:
        prober.discover_base()
        known = _learn_facts(prober, markup)
        markup = _with_compound_tags(prober, markup)
        facts = learn_turn(prober, markup)
        reasoning = learn_reasoning(prober, markup, facts.turn)
        content, prefix, after = learn_content(facts, reasoning, markup)
        if prefix:
            notes.append(f"answers start with the plain text {prefix!r}, read only at the start of a turn")
        turn_ends: dict[str, str] = {}
        past = history_turn_end(prober, content, markup, tokens_before_answer(facts, markup))
        end, source = turn_end_after_answer(facts, after, markup, past)
        if end is not None:
            turn_ends[end] = source
        found = learn_tools(prober, markup, facts.turn, set(turn_ends), reasoning)
        if found.note:
            notes.append(found.note)
        starts = {s.text for s in markup.spans(facts.turn.header)[:1]}
        for tok, source in found.turn_ends.items():
            if tok not in starts:  # a template that writes the next turn's start right after calls (Command-R+)
                turn_ends.setdefault(tok, source)
        if reasoning.kind == "none" and found.empty_block is not None:
            reasoning = ReasoningSyntax("tags", *found.empty_block, history=reasoning.history,
                                        source="an empty block the template writes before tool calls")
        channels = learn_channels(prober, markup, facts.turn, found.tools) if reasoning.kind == "none" else None
        if channels is not None:
            reasoning = ReasoningSyntax("channels", history=reasoning.history, source="rendering",
                                        prompt_opens=channels.message not in facts.turn.body_prefix)
            for tok in channels.turn_ends:
                turn_ends.setdefault(tok, "template:channels")
        outputs = _outputs(prober, markup, facts, tuple(turn_ends)) + found.outputs
        guards, end_strings = learn_guards(prober, markup, facts, set(turn_ends), outputs)
        if not turn_ends:
            plain = plain_turn_end(prober, facts, after)
            end_strings = tuple(dict.fromkeys(s for s in (plain, *end_strings) if s))
        eos = eos_after_every_rendering(prober, facts)
    except (AnalysisError, TurnspecError) as exc:
        if isinstance(exc, TemplateError) and exc.limit:
            message = f"the template ran past turnspec's limits ({exc.template_message})"
        else:
            message = exc.template_message if isinstance(exc, TemplateError) else str(exc)
        return _with_prober(TemplateAnalysis(sha, error=" ".join(str(message).split()), requires=dict(prober.requires),
                                             control_tokens=tuple(sorted(markup.tokens)),
                                             elapsed_ms=(time.perf_counter() - t0) * 1000, **known), prober)
    return _with_prober(TemplateAnalysis(
        sha,
        generation_prompt=facts.generation_prompt,
        assistant_header=facts.turn.header,
        turn_ends=tuple(turn_ends),
        turn_end_sources=turn_ends,
        history_turn_ends=tuple(dict.fromkeys(t for t in (past, *turn_ends) if t)),
        prompt_supplied=facts.prompt_supplied,
        eos_after_every_rendering=eos,
        guards=guards,
        end_strings=end_strings,
        reasoning=reasoning,
        content=content,
        content_prefix=prefix,
        body_prefix=facts.turn.body_prefix,
        tools=found.tools,
        channels=channels,
        control_tokens=tuple(sorted(markup.tokens)),
        requires=dict(prober.requires),
        notes=tuple(notes),
        elapsed_ms=(time.perf_counter() - t0) * 1000,
        **known,
    ), prober)


def _learn_facts(prober: Prober, markup: Markup) -> dict[str, Any]:
    """The facts that need no tools (turnspec.analysis.facts), learned before the turn analysis so that a template
    failing later (a loop with tools) still has them."""
    from .facts import learn_bos, learn_continue_final, learn_generation_prompt, learn_roles, learn_system

    return {"generation": learn_generation_prompt(prober, markup), "bos": learn_bos(prober),
            "system": learn_system(prober, markup), "roles": learn_roles(prober),
            "continue_final_message": learn_continue_final(prober)}


def _with_compound_tags(prober: Prober, markup: Markup) -> Markup:
    """`markup` plus the tags the template builds from generic tokens and a name (`<|open|>think<|sep|>`), read as
    one token each by the rest of the analysis (turnspec.analysis.compound)."""
    from .compound import compound_tags
    from .probes import ARGS_A, ARGS_B, ID_A, ID_B, NAME_A, NAME_B, TOOLS, call

    texts = [prober.attempt([user(), assistant(CONTENT, reasoning=REASONING)])[0],
             prober.attempt([user(), assistant(calls=[call(NAME_A, ARGS_A, ID_A, False),
                                                      call(NAME_B, ARGS_B, ID_B, False)])], tools=TOOLS)[0]]
    found = compound_tags([t for t in texts if t], markup)
    return Markup(markup.tokens | found) if found else markup


def _with_prober(analysis: TemplateAnalysis, prober: Prober) -> TemplateAnalysis:
    """Keep the Prober (not a field: not compared, not serialized) for the facts learned on first use."""
    object.__setattr__(analysis, "_prober", prober)
    return analysis


def _outputs(prober: Prober, markup: Markup, facts: Any, turn_ends: tuple[str, ...]) -> list[str]:
    """What the assistant itself writes in the probes (up to its turn end): guards must never occur in it."""
    texts = [facts.content_turn]
    finished, _ = prober.attempt([user(), assistant(CONTENT, reasoning=REASONING)])
    if finished is not None and REASONING in finished:
        texts.append(facts.turn.body_of(finished, REASONING))
    out = []
    for text in texts:
        cut = min([i for i in (text.find(t) for t in turn_ends) if i >= 0], default=len(text))
        out.append(text[:cut])
    return out
