"""turnspec's reader on the parser tests of vLLM 0.33 and llama.cpp (see tests/helpers/parser_eval.py).

Every case passes except the listed known failures (data/parser_eval/known_failures.tsv, with what differs; the
README groups them by cause: syntaxes turnspec does not read, templates that raise, conventions of one project
that turnspec does not adopt). A case that starts failing is a regression; a listed case that passes is reported,
so the list only shrinks.
"""

from __future__ import annotations

import pytest

from helpers.paths import need
from helpers.parser_eval import SHARED_TEMPLATES, SMOLLM2_TOKENIZER, known_failures, load_cases, verdict

CASES = load_cases()
KNOWN = known_failures()
FIXED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _shared():
    need(SMOLLM2_TOKENIZER)
    need(SHARED_TEMPLATES)
    yield
    if FIXED:
        print(f"\n{len(FIXED)} known parser-eval failures now pass (remove them from known_failures.tsv): {FIXED}")


def test_the_known_failures_are_a_minority():
    assert len(CASES) == 860 and set(KNOWN) <= {c["id"] for c in CASES}
    assert len(KNOWN) <= 47, "the list only shrinks (813 of 860 read as the source projects expect)"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case):
    ok, why = verdict(case)
    if case["id"] in KNOWN:
        if ok:
            FIXED.append(case["id"])
        return
    assert ok, why
