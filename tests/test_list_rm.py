"""`turnspec list` and `turnspec rm` on a temporary Hugging Face cache and a GGUF folder (never the network).

The cache holds SmolLM2's real chat files and GGUF. Weight files other than the GGUF are placeholder bytes:
`list` reads templates, tokenizers and file names, never weights, and `rm` only deletes.
"""

from __future__ import annotations

import json
import os
from importlib.util import find_spec
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers.hub_layout import add_cached_repo
from test_onboard_cli import assert_one_line_error

from turnspec.cli import app

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def invoke(*args: object, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def envelope(result) -> dict:
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    data = json.loads(lines[0])
    assert data["schema"] == "turnspec/1" and set(data) == {"schema", "command", "ok", "data", "notices", "error"}
    return data


def engines(fmt: str) -> list[str]:
    """What the machine running the tests has installed, found independently of turnspec's own check."""
    found = []
    if fmt == "gguf" and find_spec("llama_cpp"):
        found.append("llamacpp")
    if fmt == "safetensors" and find_spec("torch") and find_spec("transformers"):
        found.append("transformers")
    return found


@pytest.fixture
def machine(tmp_path, smollm2_dir, smollm2_gguf, monkeypatch):
    """A cache with a complete model, an interrupted pull, a missing shard, a GGUF repo and a base model; and a
    GGUF folder with the real GGUF and a split GGUF missing its second part."""
    for name in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TURNSPEC_GGUF_DIRS"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "hub"
    chat = {p.name: p for p in smollm2_dir.iterdir() if p.is_file()}
    weights = b"placeholder weights " * 500
    add_cached_repo(cache, REPO, {**chat, "config.json": b'{"model_type": "llama"}', "model.safetensors": weights})
    (cache / ".locks" / f"models--{REPO.replace('/', '--')}").mkdir(parents=True)
    (cache / ".locks" / f"models--{REPO.replace('/', '--')}" / "abc.lock").write_text("")

    partial = add_cached_repo(cache, "someone/Partial-Model", chat).parents[1]
    (partial / "blobs" / ("e" * 64 + ".incomplete")).write_bytes(b"x" * 250)
    (partial / ".turnspec-pull.json").write_text(json.dumps({
        "repo_id": "someone/Partial-Model", "commit": "12fd25f77366fa6b3b4b768ec3050bf629380bac",
        "name": "someone/Partial-Model", "files": {"model.safetensors": {"size": 1000, "etag": "e" * 64}}}))

    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    add_cached_repo(cache, "someone/Sharded", {**chat, "model.safetensors.index.json": json.dumps(index).encode(),
                                                "model-00001-of-00002.safetensors": weights})
    add_cached_repo(cache, "someone/SmolLM2-GGUF", {"SmolLM2-135M-Instruct.Q4_1.gguf": smollm2_gguf,
                                                    "copy/SmolLM2-135M-Instruct.Q4_1.gguf": smollm2_gguf})
    base_config = json.loads((smollm2_dir / "tokenizer_config.json").read_text())
    base_config.pop("chat_template", None)
    add_cached_repo(cache, "someone/base", {"tokenizer_config.json": json.dumps(base_config).encode(),
                                            "tokenizer.json": smollm2_dir / "tokenizer.json",
                                            "model.safetensors": weights})
    folder = tmp_path / "ggufs"
    folder.mkdir()
    (folder / smollm2_gguf.name).symlink_to(smollm2_gguf)
    (folder / "big-00001-of-00002.gguf").write_bytes(b"GGUF but only the first part")
    return cache, folder, tmp_path / "profiles"


def listing(cache: Path, *args: object) -> dict[str, dict]:
    result = invoke("list", "--cache", cache, "--json", *args)
    assert result.exit_code == 0, result.stderr
    data = envelope(result)
    assert data["ok"] and data["command"] == "list"
    return {row["name"]: row for row in data["data"]}


# ---------------------------------------------------------------------------------------------------- list
def test_list_reports_format_size_engines_readiness_and_files(machine):
    cache, folder, _ = machine
    rows = listing(cache, "--gguf-dir", folder)
    assert set(rows) == {REPO, "someone/Partial-Model", "someone/Sharded", "someone/SmolLM2-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf",
                         "someone/SmolLM2-GGUF/copy/SmolLM2-135M-Instruct.Q4_1.gguf", "someone/base",
                         str(folder / GGUF_FILE), str(folder / "big-00001-of-00002.gguf")}
    smol = rows[REPO]
    snapshot = Path(smol["path"])
    assert smol["format"] == "safetensors" and smol["files"] == "complete" and smol["source"] == "hf-cache"
    assert smol["size_bytes"] == sum(p.resolve().stat().st_size for p in snapshot.iterdir())
    assert smol["engines"] == engines("safetensors")
    chat = smol["chat"]
    assert chat["ready"] and chat["template"] and chat["stops"]["token_ids"] == [2]
    assert chat["stops"]["tokens"] == ["<|im_end|>"]
    assert chat["reasoning"] == {"readable": False, "format": None} and chat["tools"]["readable"] is False
    assert "does not render assistant tool calls" in chat["tools"]["reason"]


def test_list_shows_an_interrupted_pull_and_a_missing_shard(machine):
    cache, _, _ = machine
    rows = listing(cache)
    partial = rows["someone/Partial-Model"]
    assert partial["files"] == "partial" and partial["format"] == "safetensors"
    assert "25% of 1.0 kB" in partial["files_detail"] and "turnspec pull someone/Partial-Model" in partial["files_detail"]
    sharded = rows["someone/Sharded"]
    assert sharded["files"] == "missing shards" and "model-00002-of-00002.safetensors" in sharded["files_detail"]
    assert rows["someone/base"]["chat"] == {"ready": False, "template": False, "error": None}


def test_list_ggufs_in_the_cache_and_in_a_folder(machine, smollm2_gguf):
    cache, folder, _ = machine
    rows = listing(cache, "--gguf-dir", folder)
    for name in ("someone/SmolLM2-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf", str(folder / GGUF_FILE)):
        row = rows[name]
        assert row["format"] == "gguf" and row["files"] == "complete" and row["engines"] == engines("gguf")
        assert row["size_bytes"] == smollm2_gguf.stat().st_size
        assert row["model_name"] == GGUF_NAME and row["chat"]["ready"] and row["chat"]["stops"]["token_ids"] == [2]
    split = rows[str(folder / "big-00001-of-00002.gguf")]
    assert split["files"] == "missing shards" and "big-00002-of-00002.gguf" in split["files_detail"]
    assert split["chat"]["ready"] is False and "not a readable GGUF" in split["chat"]["error"]


def test_gguf_folders_from_the_environment(machine, monkeypatch):
    cache, folder, _ = machine
    monkeypatch.setenv("TURNSPEC_GGUF_DIRS", os.pathsep.join([str(folder), str(folder)]))
    assert str(folder / GGUF_FILE) in listing(cache, "ggufs/")


def test_pattern_is_a_substring_or_a_glob(machine):
    cache, _, _ = machine
    assert set(listing(cache, "smollm2")) == {REPO, "someone/SmolLM2-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf",
                                             "someone/SmolLM2-GGUF/copy/SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert set(listing(cache, "someone/*-model")) == {"someone/Partial-Model"}


def test_list_table(machine):
    cache, folder, _ = machine
    result = invoke("list", "--cache", cache, "--gguf-dir", folder)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in ("NAME", "FORMAT", "SIZE", "ENGINE", "CHAT", "FILES", REPO, "✓ template", "no chat template",
                 "partial", "missing shards", "someone/SmolLM2-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf", "98.4 MB"):
        assert text in out, text


def test_quick_skips_the_readiness_check(machine):
    cache, _, _ = machine
    rows = listing(cache, "--quick")
    assert rows[REPO]["chat"] is None and rows[REPO]["files"] == "complete"


def test_empty_cache_says_how_to_get_a_model(tmp_path):
    data = envelope(invoke("list", "--cache", tmp_path / "nothing", "--json"))
    assert data["ok"] and data["data"] == [] and "turnspec pull" in data["notices"][0]


def test_a_gguf_dir_that_is_not_a_folder_is_one_line(tmp_path):
    result = invoke("list", "--cache", tmp_path, "--gguf-dir", tmp_path / "nope", "--json")
    assert_one_line_error(result, "not a folder", exit_code=3)
    data = envelope(result)
    assert data["ok"] is False and data["error"]["code"] == "not_found" and data["error"]["exit_code"] == 3


def test_deep_onboards_every_model_and_saves_profiles(machine):
    """`list --deep` is the coverage report `scan` used to print (scan stays as a hidden alias)."""
    cache, folder, profiles = machine
    rows = listing(cache, "--gguf-dir", folder, "--deep", "--save", "--profiles", profiles)
    smol = rows[REPO]["onboarding"]
    assert smol["error"] is None and smol["system"] == "replaces" and smol["tools"] == "ignored"
    assert smol["stops"] == "<|im_end|> (2)" and smol["format"] == '"<|im_start|>assistant\\n"'
    assert smol["findings"]["system"]["default"].startswith("You are a helpful AI assistant named SmolLM")
    assert smol["history"] == "kept" and smol["findings"]["history"]["prefix_stable"] is True
    assert rows[str(folder / GGUF_FILE)]["onboarding"]["system"] == "replaces"
    assert "template" in rows["someone/base"]["onboarding"]["error"]
    assert (profiles / "HuggingFaceTB--SmolLM2-135M-Instruct.yaml").is_file()
    assert rows[REPO]["profile"] == str(profiles / "HuggingFaceTB--SmolLM2-135M-Instruct.yaml")
    table = invoke("scan", "--cache", cache)
    assert table.exit_code == 0 and "`scan` is now `turnspec list --deep`" in table.stderr
    assert "chat model coverage" in table.stdout and "replaces" in table.stdout and "HISTORY" in table.stdout
    assert "6 models onboarded, 1 with errors" in table.stdout  # the base model (the partial one has its chat files)


def test_deep_reports_a_broken_config_as_a_partial_onboarding(tmp_path, smollm2_dir):
    cache = tmp_path / "hub"
    files = {p.name: p for p in smollm2_dir.iterdir() if p.is_file()}
    add_cached_repo(cache, "someone/broken-config", {**files, "tokenizer_config.json": b'{"eos_token": '})
    row = listing(cache, "--deep")["someone/broken-config"]
    assert "tokenizer_config.json" in row["onboarding"]["error"] and row["onboarding"]["system"] == "replaces"
    assert row["chat"]["ready"] is False and "invalid JSON" in row["chat"]["error"]


# ---------------------------------------------------------------------------------------------------- rm
def test_rm_asks_first_and_no_keeps_everything(machine):
    cache, _, _ = machine
    storage = cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    for answer in ("n\n", "\n", "", "yes please\n"):
        result = invoke("rm", REPO, "--cache", cache, "--json", input=answer)
        question, error = [line.strip() for line in result.stderr.strip().splitlines()]
        assert question.startswith("Remove HuggingFaceTB/SmolLM2-135M-Instruct from the Hugging Face cache (")
        assert question.endswith("10.7 kB)? [y/N]")
        assert error.startswith("turnspec: error: nothing removed") and result.exit_code == 1
        assert envelope(result)["ok"] is False and storage.is_dir()


def test_rm_yes_removes_the_repo_with_its_lock_files(machine):
    cache, _, _ = machine
    storage = cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    locks = cache / ".locks" / storage.name
    result = invoke("rm", REPO, "--cache", cache, input="y\n")
    assert result.exit_code == 0, result.stderr
    assert not storage.exists() and not locks.exists()
    assert "removed HuggingFaceTB/SmolLM2-135M-Instruct" in result.stdout
    assert REPO not in listing(cache)
    assert (cache / "models--someone--Sharded").is_dir()  # nothing else touched


def test_rm_a_partial_download(machine):
    cache, _, _ = machine
    result = invoke("rm", "someone/Partial-Model", "--cache", cache, "-f", "--json")
    assert result.exit_code == 0 and envelope(result)["data"]["kind"] == "cached repo"
    assert not (cache / "models--someone--Partial-Model").exists()


def test_rm_one_gguf_keeps_the_blob_another_file_still_uses(machine, smollm2_gguf):
    cache, _, _ = machine
    storage = cache / "models--someone--SmolLM2-GGUF"
    name = "someone/SmolLM2-GGUF/copy/SmolLM2-135M-Instruct.Q4_1.gguf"
    result = invoke("rm", name, "--cache", cache, "-f", "--json")
    assert result.exit_code == 0, result.stderr
    assert envelope(result)["data"]["kind"] == "cached file"
    rows = listing(cache)
    assert name not in rows and rows["someone/SmolLM2-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf"]["chat"]["ready"]
    assert smollm2_gguf.is_file()  # the blob was a link to the package's file: never followed
    last = invoke("rm", "someone/SmolLM2-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf", "--cache", cache, "-f")
    assert last.exit_code == 0 and not storage.exists() and "the whole repo goes" in last.stderr


def test_rm_profile(machine, smollm2_dir):
    cache, _, profiles = machine
    assert invoke("onboard", smollm2_dir, "--save", "--out", profiles).exit_code == 0
    saved = profiles / "smollm2-135m-instruct.yaml"
    assert saved.is_file()
    keep = invoke("rm", REPO, "--cache", cache, "--profiles", profiles, "-f")
    assert keep.exit_code == 0 and saved.is_file()
    result = invoke("rm", "smollm2-135m-instruct", "--profiles", profiles, "--cache", cache, input="y\n")
    assert result.exit_code == 0 and "the profile of smollm2-135m-instruct" in result.stderr
    assert not saved.exists()


def test_rm_keeps_the_profile_of_a_removed_repo_and_says_so(machine, tmp_path):
    cache, _, profiles = machine
    profiles.mkdir()
    saved = profiles / "HuggingFaceTB--SmolLM2-135M-Instruct.yaml"
    saved.write_text("model: HuggingFaceTB/SmolLM2-135M-Instruct\nnotes: mine\n")
    result = invoke("rm", REPO, "--cache", cache, "--profiles", profiles, "-f")
    assert result.exit_code == 0 and saved.is_file() and f"rm {REPO} --profile" in result.stderr
    gone = invoke("rm", REPO, "--cache", cache, "--profiles", profiles, "--profile", "-f")
    assert gone.exit_code == 0 and not saved.exists()


def test_rm_unknown_names_and_own_files(machine, tmp_path):
    cache, folder, profiles = machine
    assert_one_line_error(invoke("rm", "nobody/nothing", "--cache", cache, "--profiles", profiles, "-f"),
                          "nobody/nothing", "turnspec list", exit_code=3)
    assert_one_line_error(invoke("rm", folder / GGUF_FILE, "--cache", cache, "-f"), "not your own files", exit_code=1)
    assert (folder / GGUF_FILE).exists()
    result = invoke("rm", "someone/SmolLM2-GGUF/nope.gguf", "--cache", cache, "-f", "--json")
    assert_one_line_error(result, "holds no nope.gguf", exit_code=3)
    assert envelope(result)["error"]["code"] == "not_found"
