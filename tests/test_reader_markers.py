"""The marker scanner: chunking never changes what it finds, and it holds back only a possible marker start."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from turnspec.reader.markers import FORMAT, Mark, MarkerScanner, build_marks, trie_regex


def normalize(pieces: list) -> list:
    """("M", marker) / ("T", text) with adjacent text merged, so chunkings compare equal."""
    out: list = []
    for p in pieces:
        if isinstance(p, Mark):
            out.append(("M", p.text))
        elif out and out[-1][0] == "T":
            out[-1] = ("T", out[-1][1] + p)
        else:
            out.append(("T", p))
    return out


def chunked(text: str, cuts: list[int]) -> list[str]:
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def scan_stream(markers: list[str], chunks: list[str]) -> list:
    sc = MarkerScanner(build_marks([(FORMAT, markers)]))
    pieces: list = []
    for c in chunks:
        pieces += sc.feed(c)
        # what is held back is always a proper prefix of some marker, never more
        assert sc.pending == "" or any(m.startswith(sc.pending) and m != sc.pending for m in markers)
    pieces += sc.feed("", final=True)
    return pieces


def tagged_reference(text: str, markers: list[str]) -> list:
    """Naive whole-text scan: leftmost position first, the longest marker at that position."""
    out: list = []
    i = start = 0
    while i < len(text):
        hit = max((m for m in markers if text.startswith(m, i)), key=len, default=None)
        if hit is None:
            i += 1
            continue
        if i > start:
            out.append(("T", text[start:i]))
        out.append(("M", hit))
        i = start = i + len(hit)
    if start < len(text):
        out.append(("T", text[start:]))
    return out


ALPHABET = "ab<|>/"
marker_st = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), min_size=1, max_size=5, unique=True)


@settings(max_examples=400, deadline=None)
@given(marker_st, st.text(alphabet=ALPHABET + "x", max_size=40), st.lists(st.integers(0, 60), max_size=12))
def test_streamed_scan_equals_whole_text_scan(markers, text, cuts):
    streamed = normalize(scan_stream(markers, chunked(text, cuts)))
    assert streamed == tagged_reference(text, markers)


@settings(max_examples=200, deadline=None)
@given(marker_st, st.text(alphabet=ALPHABET + "x", max_size=40))
def test_one_character_at_a_time_equals_whole(markers, text):
    streamed = normalize(scan_stream(markers, list(text)))
    assert streamed == tagged_reference(text, markers)


def test_holds_back_only_a_possible_marker_start():
    sc = MarkerScanner(build_marks([(FORMAT, ["<|im_end|>", "<|im_start|>user"])]))
    assert sc.feed("Hello <|im") == ["Hello "]
    assert sc.pending == "<|im"
    assert sc.feed("age") == ["<|image"]  # it was not a marker after all: released at once
    assert sc.pending == ""


def test_longest_marker_wins_and_a_complete_marker_waits_while_it_could_grow():
    sc = MarkerScanner(build_marks([(FORMAT, ["<|start|>", "<|start|>user"])]))
    assert sc.feed("x<|start|>") == ["x"]  # could still become <|start|>user
    pieces = sc.feed("user")
    assert [p.text for p in pieces] == ["<|start|>user"]
    pieces = sc.feed("<|start|>assistant", final=True)
    assert [getattr(p, "text", p) for p in pieces] == ["<|start|>", "assistant"]


def test_trie_regex_matches_hundreds_of_reserved_tokens_longest_first():
    words = [f"<|reserved_special_token_{i}|>" for i in range(256)] + ["<|eot_id|>"]
    rx = trie_regex(words)
    assert rx.search("a <|reserved_special_token_25|> b").group() == "<|reserved_special_token_25|>"
    assert rx.search("<|eot_id|>").group() == "<|eot_id|>"
    assert trie_regex([]) is None


def test_a_string_in_several_roles_keeps_the_strongest():
    marks = build_marks([("stop_token", ["<|im_end|>"]), ("control", ["<|im_end|>", "<|im_start|>"])])
    assert marks["<|im_end|>"].kind == "stop_token"
    assert marks["<|im_start|>"].kind == "control"
