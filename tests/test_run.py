"""`turnspec run` end to end on the real SmolLM2 GGUF with llama.cpp (greedy), as a user runs it.

SmolLM2-135M (Q4_1) is tiny: with its template's default system prompt it rambles in French on the capital
question; with a plain system prompt it answers. The tests use `--system "You are a helpful assistant."`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")

SYSTEM = "You are a helpful assistant."
CONTROL = re.compile(r"<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>|<repo_name>|<file_sep>")


def turnspec_cmd(*args: str, stdin: str | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "turnspec.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def capital_answer(smollm2_gguf):
    proc = turnspec_cmd("run", "-p", "What is the capital of France?", "--system", SYSTEM, "--json", "--show-prompt")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["data"], proc.stderr


def test_default_model_answers_paris_and_stops_on_im_end(capital_answer):
    answer, _ = capital_answer
    assert "Paris" in answer["content"]
    assert answer["finish_reason"] == "stop" and answer["stopped_by"] == "<|im_end|>"
    assert not CONTROL.search(answer["content"])
    assert answer["usage"]["completion_tokens"] < 30


def test_system_replaces_the_default_system_prompt(capital_answer):
    _, prompt = capital_answer
    assert prompt.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nWhat is the capital of France?")
    assert "SmolLM" not in prompt


def test_without_system_the_template_default_is_kept(smollm2_gguf):
    proc = turnspec_cmd("run", "-p", "Hi", "--max-tokens", "3", "--json", "--show-prompt")
    assert proc.returncode == 0, proc.stderr
    assert "You are a helpful AI assistant named SmolLM, trained by Hugging Face" in proc.stderr


def test_max_tokens_gives_length(smollm2_gguf):
    proc = turnspec_cmd("run", "-p", "Tell me a long story.", "--max-tokens", "5", "--json")
    answer = json.loads(proc.stdout)["data"]
    assert answer["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 5


def test_prompt_from_stdin_plain_output(smollm2_gguf):
    proc = turnspec_cmd("run", "--system", SYSTEM, stdin="What is the capital of France?\n")
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout and not CONTROL.search(proc.stdout)


def test_three_turns_keep_context(smollm2_gguf):
    """Library-level chat on the same engine: the name given in turn 1 is recalled in turn 3."""
    import turnspec
    from turnspec.chat import GenerationOptions
    from turnspec.chat_session import ChatSession
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_gguf)
    engine = load_engine("llamacpp", smollm2_gguf)
    try:
        chat = ChatSession(spec, engine, system=SYSTEM, options=GenerationOptions(max_tokens=48))
        first = chat.ask("Hi, I am Bob.")
        chat.ask("Tell me a fun fact.")
        third = chat.ask("What is my name?")
        # Control: the same question without the earlier turns does not produce the name.
        fresh = ChatSession(spec, engine, system=SYSTEM, options=GenerationOptions(max_tokens=48)).ask("What is my name?")
    finally:
        engine.close()
    assert "Bob" in third.content, third.content
    assert "Bob" not in fresh.content, fresh.content
    prompt = spec.render(chat.conversation(chat.history[:-1]), add_generation_prompt=True)
    assert prompt.count("<|im_start|>user") == 3 and prompt.count("<|im_start|>assistant") == 3
    assert prompt.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    for turn in (first, third):
        assert turn.finish_reason in ("stop", "length") and not CONTROL.search(turn.content)


def test_bad_model_path_is_one_line(tmp_path):
    proc = turnspec_cmd("run", str(tmp_path / "missing.gguf"), "-p", "hi")
    assert proc.returncode == 3  # not found (README: exit codes)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_interactive_chat_in_a_terminal(smollm2_gguf):
    pexpect = pytest.importorskip("pexpect", reason="the terminal test drives the chat with pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "turnspec.cli", "run", "--system", SYSTEM, "--max-tokens", "40"],
                          env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"}, encoding="utf-8", timeout=120)
    try:
        child.expect("Type 'exit' or 'quit' to end.")
        child.expect(">>> ")
        child.sendline("What is the capital of France?")
        child.expect(">>> ")
        first = child.before
        child.sendline("Thank you!")
        child.expect(">>> ")
        second = child.before
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert "Paris" in first
    assert second.strip()
    assert not CONTROL.search(first + second)
    assert child.exitstatus == 0


def test_a_saved_profile_s_pinned_stop_string_is_applied(smollm2_gguf, tmp_path):
    """onboard --save writes the profile; a stop string pinned in it by hand ends the answer at run time."""
    saved = turnspec_cmd("onboard", "--save", "--out", str(tmp_path))
    assert saved.returncode == 0, saved.stderr
    (profile,) = tmp_path.glob("*.yaml")
    assert profile.name == "HuggingFaceTB--SmolLM2-135M-Instruct.Q4_1.yaml"
    text = profile.read_text(encoding="utf-8")
    assert "\npinned: {}\n" in text
    pin = "\npinned:\n  stops:\n    extra_strings: [\" is Paris\"]\n"
    profile.write_text(text.replace("\npinned: {}\n", pin), encoding="utf-8")
    args = ("run", "-p", "What is the capital of France?", "--system", SYSTEM, "--json")
    pinned = json.loads(turnspec_cmd(*args, "--profiles", str(tmp_path)).stdout)["data"]
    assert pinned["content"] == "The capital of France" and pinned["stopped_by"] == " is Paris"
    unpinned = json.loads(turnspec_cmd(*args, "--profiles", str(tmp_path / "none")).stdout)["data"]
    assert unpinned["content"] == "The capital of France is Paris."
