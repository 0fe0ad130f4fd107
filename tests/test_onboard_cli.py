"""`turnspec onboard / scan / show` from the command line: reports, profiles, a fake HF cache, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers.paths import CORPUS, need

from turnspec.cli import app

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
COMMIT = "12fd25f77366fa6b3b4b768ec3050bf629380bac"
LOOPING = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("turnspec: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def add_repo(cache: Path, repo_id: str, files: dict[str, Path | bytes], ref: bool = True) -> Path:
    """A repo in the hub's layout (snapshots/<commit>/..., refs/main); files copied, GGUFs symlinked."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        target = snapshot / name
        if isinstance(content, Path) and content.suffix == ".gguf":
            target.symlink_to(content)
        elif isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    if ref:
        (storage / "refs").mkdir()
        (storage / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def hub(tmp_path, smollm2_dir) -> Path:
    """A fake hub cache: SmolLM2's chat files, a repo with a broken config, and a repo with no chat files."""
    root = tmp_path / "hub"
    files = {p.name: p for p in smollm2_dir.iterdir() if p.is_file()}
    add_repo(root, REPO, files)
    broken = dict(files, **{"tokenizer_config.json": b'{"eos_token": '})
    add_repo(root, "someone/broken-config", broken)
    add_repo(root, "someone/weights-only", {"config.json": b"{}"})
    return root


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ------------------------------------------------------------------------------------------ onboard
def test_onboard_prints_the_report(smollm2_dir, tmp_path):
    result = invoke("onboard", smollm2_dir, "--out", tmp_path / "profiles")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith("turnspec onboard: smollm2-135m-instruct")
    assert 'replaces a default: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"' in out
    assert 'add_generation_prompt appends "<|im_start|>assistant\\n"' in out
    assert "<|im_end|> (2)" in out and "sha256 " in out
    assert not (tmp_path / "profiles").exists()  # nothing written without --save


def test_onboard_save_writes_org_name_yaml_and_show_prints_it(hub, tmp_path):
    out_dir = tmp_path / "profiles"
    result = invoke("onboard", REPO, "--cache", hub, "--save", "--out", out_dir)
    assert result.exit_code == 0, result.stderr
    path = out_dir / "HuggingFaceTB--SmolLM2-135M-Instruct.yaml"
    assert path.is_file() and f"profile saved: {path}" in result.stdout
    shown = invoke("show", REPO, "--out", out_dir)
    assert shown.exit_code == 0 and shown.stdout == path.read_text(encoding="utf-8")
    assert "model: HuggingFaceTB/SmolLM2-135M-Instruct" in shown.stdout
    assert invoke("show", path).stdout == shown.stdout  # a profile path works too


def test_onboard_json(smollm2_dir, tmp_path):
    result = invoke("onboard", smollm2_dir, "--json", "--out", tmp_path)
    assert result.exit_code == 0
    envelope = json.loads(result.stdout)
    assert envelope["schema"] == "turnspec/1" and envelope["command"] == "onboard" and envelope["ok"]
    data = envelope["data"]
    assert data["findings"]["system"]["mode"] == "replaces" and data["error"] is None
    assert len(data["template_sha256"]) == 64


def test_onboard_notices_a_changed_template(smollm2_dir, tmp_path):
    assert invoke("onboard", smollm2_dir, "--save", "--out", tmp_path).exit_code == 0
    other = tmp_path / "other.jinja"
    other.write_text((smollm2_dir / "chat_template.jinja").read_text(encoding="utf-8") + "\n", encoding="utf-8")
    result = invoke("onboard", smollm2_dir, "--template", other, "--out", tmp_path)
    assert result.exit_code == 0
    assert "the chat template changed since the saved profile" in result.stdout


def test_onboard_a_bare_jinja_file(tmp_path):
    template = need(CORPUS / "templates" / "google-gemma-2-2b-it.jinja")
    result = invoke("onboard", template, "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "unsupported (raises: System role not supported)" in result.stdout


def test_show_without_a_profile_is_one_line(tmp_path):
    assert_one_line_error(invoke("show", "org/absent", "--out", tmp_path), "no saved profile for org/absent",
                          "org--absent.yaml", exit_code=3)


# ------------------------------------------------------------------------------------------ errors: one line + partial report
def test_malformed_tokenizer_config(smollm2_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(smollm2_dir, folder)
    (folder / "tokenizer_config.json").write_text('{"bos_token": "<s>",\n', encoding="utf-8")
    result = invoke("onboard", folder, "--out", tmp_path / "p")
    assert_one_line_error(result, "tokenizer_config.json", "invalid JSON")
    assert "PARTIAL" in result.stdout and "replaces a default" in result.stdout


def test_missing_template(smollm2_dir, tmp_path):
    folder = tmp_path / "base"
    folder.mkdir()
    config = json.loads((smollm2_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    result = invoke("onboard", folder, "--out", tmp_path / "p")
    assert_one_line_error(result, "has no chat template", "--template FILE")
    assert "PARTIAL" in result.stdout and "<|im_end|>" in result.stdout


def test_template_that_loops_forever(tmp_path):
    template = tmp_path / "looper.jinja"
    template.write_text(LOOPING, encoding="utf-8")
    result = invoke("onboard", template, "--time-limit", "0.3", "--out", tmp_path / "p")
    assert_one_line_error(result, "time limit")
    assert "PARTIAL" in result.stdout and "sha256" in result.stdout


@pytest.mark.slow
def test_template_that_loops_forever_with_the_default_limit_via_subprocess(tmp_path):
    """The real command line: 2 s per probe, then one line on stderr, no traceback, exit 1."""
    template = tmp_path / "looper.jinja"
    template.write_text(LOOPING, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "turnspec.cli", "onboard", str(template), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "time limit" in done.stderr and "Traceback" not in done.stderr
    assert "PARTIAL" in done.stdout


def test_unknown_model_is_one_line(tmp_path):
    assert_one_line_error(invoke("onboard", tmp_path / "nowhere", "--out", tmp_path), "no such file or folder")


def test_template_with_a_syntax_error_is_one_line(tmp_path):
    """As `render` says it (one line naming the template), with a partial report: not a jinja traceback."""
    template = tmp_path / "broken.jinja"  # synthetic
    template.write_text("{% for m in messages %}{{ m.content }\n{% endfor %}", encoding="utf-8")
    result = invoke("onboard", template, "--out", tmp_path / "p")
    assert_one_line_error(result, "the chat template of broken raised: unexpected '}' (line 1)")
    assert "PARTIAL" in result.stdout and "sha256" in result.stdout
    as_json = invoke("onboard", template, "--json", "--out", tmp_path / "p")
    envelope = json.loads(as_json.stdout)
    assert envelope["error"]["message"] == "the chat template of broken raised: unexpected '}' (line 1)"


def test_tokenizer_config_nested_too_deep_is_one_line(smollm2_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(smollm2_dir, folder)
    depth = 100_000
    (folder / "tokenizer_config.json").write_text('{"x": ' + "[" * depth + "]" * depth + "}", encoding="utf-8")
    result = invoke("onboard", folder, "--out", tmp_path / "p")
    assert_one_line_error(result, "tokenizer_config.json: invalid JSON (nested too deeply to parse)")
    assert "PARTIAL" in result.stdout and "replaces a default" in result.stdout  # the template still probed
    messages = tmp_path / "chat.json"
    messages.write_text(json.dumps([{"role": "user", "content": "hi"}]), encoding="utf-8")
    render = invoke("render", folder, "--messages", messages)  # the loader every command shares
    assert_one_line_error(render, "tokenizer_config.json: invalid JSON (nested too deeply to parse)")
