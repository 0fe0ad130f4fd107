"""Learn a channel format by rendering: a turn written as several messages whose headers say where each goes.

Harmony writes reasoning as `<|start|>assistant<|channel|>analysis<|message|>…<|end|>` and the answer as a second
message on the `final` channel; muse_glimmer writes `<|start|>assistant to=self<|message|>…<|eom|>` then
`to=user`. Both are the same syntax: a rendering of an answer with reasoning shows the message token, the message
end, and the two header words (a channel after a channel token, or a recipient); a rendering of one tool call
shows what the template writes around the function name in the header and how the body holds the arguments.
Nothing here knows a format by name.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from .markup import Markup
from .probes import ARGS_A, CONTENT, ID_A, NAME_A, REASONING, TOOLS, Prober, assistant, call, user
from .syntax import ChannelSyntax, ToolSyntax
from .turn import TurnProbe

#: A recipient marker: a word ending in `=` or `:` right before the recipient (`to=`).
_RECIPIENT = re.compile(r"([A-Za-z_]\w*[=:])(\S*)$")


def learn_channels(prober: Prober, markup: Markup, turn: TurnProbe, tools: ToolSyntax) -> ChannelSyntax | None:
    """The channel format, when an answer with reasoning renders as two messages of the assistant; else None."""
    finished, _ = prober.attempt([user(), assistant(CONTENT, reasoning=REASONING)])
    head = turn.header.strip()
    first = markup.first(head)
    if finished is None or REASONING not in finished or first is None or first.start != 0:
        return None
    word = re.match(r"\s*([^\s<]+)", head[first.end:])
    if word is None:
        return None
    start, role = first.text, word.group(1)
    r = finished.rfind(REASONING)
    c = finished.find(CONTENT, r)
    at = finished.rfind(start + role, 0, r)
    if at < 0 or c < 0:
        return None
    lead, mid = finished[at + len(start + role):r], finished[r + len(REASONING):c]
    restart = mid.find(start + role)
    message = _last_token(lead, markup)
    if restart < 0 or not message or not mid.endswith(message):
        return None
    message_end = mid[:restart].strip()
    end_token = markup.first(message_end)
    if end_token is None or end_token.text != message_end:
        return None
    reasoning_header, content_header = lead[:-len(message)], mid[restart + len(start + role):-len(message)]
    channel, reasoning, content, recipient = _words(reasoning_header, content_header, markup)
    if not reasoning or not content or reasoning == content:
        return None
    found = ChannelSyntax(start, role, message, message_end, (), channel, recipient, reasoning, content)
    return _with_calls(prober, markup, found, tools)


def _last_token(text: str, markup: Markup) -> str:
    spans = markup.spans(text)
    return spans[-1].text if spans and text.rstrip().endswith(spans[-1].text) else ""


def _words(reasoning_header: str, content_header: str, markup: Markup) -> tuple[str, str, str, str]:
    """(channel token, reasoning word, content word, recipient marker) from the two headers."""
    a, b = markup.spans(reasoning_header), markup.spans(content_header)
    if a and b and a[0].text == b[0].text and a[0].start == 0 == b[0].start:
        return a[0].text, reasoning_header[a[0].end:].strip(), content_header[b[0].end:].strip(), ""
    ma, mb = _RECIPIENT.search(reasoning_header.strip()), _RECIPIENT.search(content_header.strip())
    if ma and mb and ma.group(1) == mb.group(1):
        return "", ma.group(2), mb.group(2), ma.group(1)
    return "", "", "", ""


def _with_calls(prober: Prober, markup: Markup, found: ChannelSyntax, tools: ToolSyntax) -> ChannelSyntax:
    """Add the turn ends, and what a tool call's message looks like: the header around the name and the body."""
    from .calls import _learn, _NotFound, _self_check

    ends = _turn_ends(prober, markup, found)
    found = replace(found, turn_ends=ends)
    rendered = None
    for as_string in (False, True):
        rendered, _ = prober.attempt([user(), assistant(calls=[call(NAME_A, ARGS_A, ID_A, as_string)])],
                                     tools=TOOLS)
        if rendered is not None and NAME_A in rendered:
            break
    if rendered is None or NAME_A not in rendered:
        return found
    at = rendered.rfind(found.head)  # the call's message is the last one (tools are listed before)
    header_end = rendered.find(found.message, at) if at >= 0 else -1
    header = rendered[at + len(found.head):header_end] if header_end >= 0 else ""
    if NAME_A not in header:
        return found
    before, after = header.split(NAME_A, 1)
    marker = _RECIPIENT.search(before.strip())
    if marker is None or (found.recipient and marker.group(1) != found.recipient):
        return found
    body = rendered[header_end + len(found.message):]
    body_calls = None
    try:
        args, end = json.JSONDecoder().raw_decode(body)
    except ValueError:
        args, end = None, -1
    if args != ARGS_A:
        end = min([i for i in (body.find(t) for t in (found.message_end, *ends)) if i >= 0], default=len(body))
        closer = markup.first(body, end)
        whole = body[:closer.end] if closer is not None and closer.start == end else body[:end]
        try:
            syntax, (s0, s1), _ = _learn(whole, None, markup, set(ends))
        except _NotFound:
            return found
        rest = body[s1:end]
        if not _markup_only(rest, markup):
            return found
        if rest.strip() and not syntax.call_close:  # one call per message: its close is all that is left
            syntax, s1 = replace(syntax, call_close=(rest,)), end
        if _self_check(syntax, body[s0:s1], None):
            return found
        body_calls = syntax
    closer = markup.first(body, end)
    if closer is not None and not body[end:closer.start].strip() and closer.text != found.message_end:
        ends = tuple(dict.fromkeys((*ends, closer.text)))
    return replace(found, recipient=marker.group(1), call_prefix=marker.group(2), call_header=after,
                   body_calls=body_calls, turn_ends=ends)


def _turn_ends(prober: Prober, markup: Markup, found: ChannelSyntax) -> tuple[str, ...]:
    """The control token right after the final answer of a finished conversation (not the message end)."""
    finished, _ = prober.attempt([user(), assistant(CONTENT)])
    if finished is None or CONTENT not in finished:
        return ()
    after = finished[finished.rfind(CONTENT) + len(CONTENT):]
    first = markup.first(after)
    if first is None or after[:first.start].strip() or first.text == found.message_end:
        return ()
    return (first.text,)


def _markup_only(text: str, markup: Markup) -> bool:
    """Whether `text` holds nothing but control tokens and whitespace."""
    for span in markup.spans(text):
        text = text.replace(span.text, "", 1)
    return not text.strip()
