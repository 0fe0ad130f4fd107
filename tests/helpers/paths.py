"""Where the test data is: the read-only folder `../shared` beside the repository, and the real SmolLM2 files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SMOLLM2_DIR = SHARED / "models" / "smollm2-135m-instruct"
CORPUS = SHARED / "corpus"
RECORDINGS = SHARED / "recordings"


def need(path: Path) -> Path:
    """Return `path`, or skip the test with a reason naming what is missing."""
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests need the ../shared data folder beside the repository")
    return path
