"""`turnspec pull` against a local Hub-compatible endpoint (tests/helpers/hub_server.py, reached through HF_ENDPOINT) that
serves SmolLM2-135M-Instruct: its real chat files from ../shared, the weights dequantized from the shipped GGUF
(conftest `smollm2_hf`), and the GGUF itself. Never the real Hub.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.paths import REPO as REPO_ROOT
from helpers.hub_layout import sha256_of
from helpers.hub_server import LocalHub, Repo

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_REPO = "someone/SmolLM2-GGUF"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SYSTEM = "You are a helpful assistant."
CHAT_FILES = ("chat_template.jinja", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def base_gguf(path: Path) -> Path:
    """A GGUF without a chat template (a base model), with 4 MB of tensor data after its header."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_name("base")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<s>", "</s>", "a", "b"])
    writer.add_tensor("weights", np.zeros(1 << 20, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def hub(smollm2_dir, smollm2_hf, smollm2_gguf, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    chat = {p.name: p for p in smollm2_dir.iterdir() if p.is_file()}
    smol = {**chat, **{n: smollm2_hf / n for n in ("config.json", "generation_config.json", "model.safetensors")}}
    base_config = json.loads((smollm2_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    base_config.pop("chat_template", None)
    base = {"tokenizer_config.json": json.dumps(base_config).encode(), "tokenizer.json": smollm2_dir / "tokenizer.json",
            "config.json": b'{"model_type": "llama"}', "model.safetensors": b"base weights " * 100_000}
    small = {**chat, "model.safetensors": b"weights " * 100_000}
    served = LocalHub([
        Repo(REPO, smol),
        Repo("someone/gated-model", small, gated=True, allowed_tokens=("hf_granted",)),
        Repo("someone/private-model", small, private=True),
        Repo("someone/base-model", base),
        Repo(GGUF_REPO, {GGUF_FILE: smollm2_gguf, "base.gguf": base_gguf(folder / "base.gguf")}),
    ])
    with served.running():
        yield served


def turnspec(hub: LocalHub, home: Path, *args: object, token: str | None = None, endpoint: str | None = None,
             **popen: object):
    """Run `turnspec ARGS` with HF_ENDPOINT at the local hub and its own cache and HF home (no stored token).

    With Popen arguments (start_new_session=...), start it in the background and return the Popen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=endpoint or hub.url, HF_HUB_CACHE=str(home / "hub"), HF_HOME=str(home / "hf"),
               NO_COLOR="1", HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if token:
        env["HF_TOKEN"] = token
    cmd = [sys.executable, "-m", "turnspec.cli", *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                **popen)
    return subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True, timeout=600)


def envelope(proc) -> dict:
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["schema"] == "turnspec/1"
    return data


def one_line_error(proc, exit_code: int, *fragments: str) -> str:
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("turnspec: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def storage(home: Path, repo_id: str) -> Path:
    return home / "hub" / ("models--" + repo_id.replace("/", "--"))


def resolve_requests(hub: LocalHub, repo_id: str) -> int:
    return sum(1 for r in hub.requests if r.path.startswith(f"/{repo_id}/resolve/"))


# ---------------------------------------------------------------------------------------------- a full pull
@pytest.mark.slow
def test_full_pull_checks_onboards_and_runs(hub, tmp_path):
    served = hub.repos[REPO]
    proc = turnspec(hub, tmp_path, "pull", REPO, "--json", "--profiles", tmp_path / "profiles")
    assert proc.returncode == 0, proc.stderr
    data = envelope(proc)["data"]
    total = sum(served.meta(p)["size"] for p in served.files)
    assert data["commit"] == served.commit and sorted(data["files"]) == sorted(served.files)
    assert data["total_bytes"] == data["downloaded_bytes"] == total and data["resumed_bytes"] == 0
    assert data["onboarding"]["stops"] == "<|im_end|> (2)" and data["onboarding"]["system"] == "replaces"
    assert Path(data["profile"]) == tmp_path / "profiles" / "HuggingFaceTB--SmolLM2-135M-Instruct.yaml"
    assert Path(data["profile"]).is_file()

    repo = storage(tmp_path, REPO)
    snapshot = repo / "snapshots" / served.commit
    for path, source in served.files.items():
        assert sha256_of(snapshot / path) == sha256_of(source), path
    assert (repo / "refs" / "main").read_text() == served.commit
    assert not (repo / ".turnspec-pull.json").exists() and not list((repo / "blobs").glob("*.incomplete"))
    # The chat files (and so the template check) came before the weights.
    gets = [r.path.rsplit("/", 1)[-1] for r in hub.requests if r.method == "GET" and r.path.startswith(f"/{REPO}/resolve/")]
    assert set(gets[:5]) == set(CHAT_FILES) and gets[5:] == ["model.safetensors"]

    listed = {row["name"]: row for row in envelope(turnspec(hub, tmp_path, "list", "--json"))["data"]}
    assert listed[REPO]["files"] == "complete" and listed[REPO]["chat"]["ready"]

    before = resolve_requests(hub, REPO)
    again = envelope(turnspec(hub, tmp_path, "pull", REPO, "--json", "--profiles", tmp_path / "profiles"))
    assert again["ok"] and again["data"]["downloaded_bytes"] == 0
    assert resolve_requests(hub, REPO) == before  # nothing fetched, not even a HEAD

    pytest.importorskip("torch", reason="running the pulled safetensors needs the transformers engine")
    answer = turnspec(hub, tmp_path, "run", REPO, "-p", "What is the capital of France?", "--system", SYSTEM,
                      "--json", "--max-tokens", "30", "--profiles", tmp_path / "profiles")
    assert answer.returncode == 0, answer.stderr
    assert "Paris" in envelope(answer)["data"]["content"]


@pytest.mark.slow
def test_an_interrupted_pull_resumes_where_it_stopped(hub, tmp_path):
    served = hub.repos[REPO]
    weights = served.meta("model.safetensors")
    held = hub.hold(REPO, "model.safetensors", after=48 << 20)
    proc = turnspec(hub, tmp_path, "pull", REPO, "--profiles", tmp_path / "profiles", start_new_session=True)
    partial = storage(tmp_path, REPO) / "blobs" / f"{weights['etag']}.incomplete"
    try:
        assert held.reached.wait(300), "the pull never reached the weights"
        deadline = time.monotonic() + 120
        while not (partial.exists() and partial.stat().st_size >= 40 << 20):  # four 10 MB chunks written
            assert time.monotonic() < deadline and proc.poll() is None, "the partial file did not grow"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = proc.communicate(timeout=120)
    finally:
        held.release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and f"`turnspec pull {REPO}` resumes it" in stderr
    kept = partial.stat().st_size
    assert 0 < kept < weights["size"]

    listed = {row["name"]: row for row in envelope(turnspec(hub, tmp_path, "list", "--json"))["data"]}
    assert listed[REPO]["files"] == "partial" and f"resume: turnspec pull {REPO}" in listed[REPO]["files_detail"]

    resumed = turnspec(hub, tmp_path, "pull", REPO, "--json", "--profiles", tmp_path / "profiles")
    assert resumed.returncode == 0, resumed.stderr
    data = envelope(resumed)["data"]
    assert data["resumed_bytes"] == kept and data["downloaded_bytes"] == weights["size"] - kept
    last_get = hub.file_requests(REPO, "model.safetensors", "GET")[-1]
    assert last_get.range == f"bytes={kept}-"
    snapshot = storage(tmp_path, REPO) / "snapshots" / served.commit
    assert sha256_of(snapshot / "model.safetensors") == weights["etag"]
    assert not partial.exists()


# ---------------------------------------------------------------------------------------------- refused early
@pytest.mark.parametrize("token,says", [(None, "hf auth login"), ("hf_not_granted", "your token was refused")])
def test_gated_repo_is_one_line_and_exit_4_before_any_weight(hub, tmp_path, token, says):
    proc = turnspec(hub, tmp_path, "pull", "someone/gated-model", "--json", token=token)
    one_line_error(proc, 4, "someone/gated-model: gated on the Hugging Face Hub", says)
    assert envelope(proc)["error"]["code"] == "access_denied"
    assert not list((storage(tmp_path, "someone/gated-model")).glob("blobs/*"))
    assert hub.file_requests("someone/gated-model", "model.safetensors") == []


def test_gated_repo_with_a_granted_token_pulls(hub, tmp_path):
    proc = turnspec(hub, tmp_path, "pull", "someone/gated-model", "--json", "--profiles", tmp_path / "p",
                    token="hf_granted")
    assert proc.returncode == 0, proc.stderr
    assert envelope(proc)["data"]["files"][-1] == "model.safetensors"


def test_private_or_missing_repo_is_not_found(hub, tmp_path):
    for repo_id in ("someone/private-model", "someone/no-such-model"):
        one_line_error(turnspec(hub, tmp_path, "pull", repo_id), 3, repo_id, "no such model", "or it is private")


def test_base_model_is_refused_before_its_weights(hub, tmp_path):
    proc = turnspec(hub, tmp_path, "pull", "someone/base-model", "--json")
    one_line_error(proc, 5, "someone/base-model has no chat template", "nothing big was downloaded", "--force")
    assert envelope(proc)["error"]["code"] == "no_chat_template"
    assert hub.file_requests("someone/base-model", "tokenizer_config.json", "GET")
    assert hub.file_requests("someone/base-model", "model.safetensors") == []
    forced = turnspec(hub, tmp_path, "pull", "someone/base-model", "--force", "--json", "--profiles", tmp_path / "p")
    assert forced.returncode == 0, forced.stderr
    assert any("pulled anyway" in n for n in envelope(forced)["notices"])
    assert hub.file_requests("someone/base-model", "model.safetensors", "GET")


def test_base_gguf_is_refused_from_its_header(hub, tmp_path):
    proc = turnspec(hub, tmp_path, "pull", f"{GGUF_REPO}/base.gguf")
    one_line_error(proc, 5, f"{GGUF_REPO}/base.gguf has no chat template")
    requests = hub.file_requests(GGUF_REPO, "base.gguf", "GET")
    assert requests and all(r.range == "bytes=0-1048575" for r in requests)  # the header, never the whole file
    assert not list(storage(tmp_path, GGUF_REPO).glob("blobs/*"))


def test_a_repo_of_ggufs_asks_which_one(hub, tmp_path):
    one_line_error(turnspec(hub, tmp_path, "pull", GGUF_REPO), 1, "holds GGUF files",
                   f"turnspec pull {GGUF_REPO}/")


def test_unknown_revision_file_and_pattern_are_not_found(hub, tmp_path):
    one_line_error(turnspec(hub, tmp_path, "pull", REPO, "--revision", "v9"), 3, "no revision 'v9'")
    one_line_error(turnspec(hub, tmp_path, "pull", f"{GGUF_REPO}/Q8.gguf"), 3, "no Q8.gguf", GGUF_FILE)
    one_line_error(turnspec(hub, tmp_path, "pull", REPO, "--include", "*.onnx"), 3, "no file matches --include")
    one_line_error(turnspec(hub, tmp_path, "pull", "not a repo"), 1, "not a Hugging Face repo id")


def test_unreachable_hub_and_offline_mode_are_exit_6(hub, tmp_path):
    one_line_error(turnspec(hub, tmp_path, "pull", REPO, endpoint="http://127.0.0.1:9"), 6, "cannot reach")
    offline = subprocess.run([sys.executable, "-m", "turnspec.cli", "pull", REPO],
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")},
                             capture_output=True, text=True, timeout=120)
    one_line_error(offline, 6, "HF_HUB_OFFLINE")


def test_tokenizer_only(hub, tmp_path):
    proc = turnspec(hub, tmp_path, "pull", REPO, "--tokenizer-only", "--json", "--profiles", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    assert sorted(envelope(proc)["data"]["files"]) == sorted(CHAT_FILES)
    row = {r["name"]: r for r in envelope(turnspec(hub, tmp_path, "list", "--json"))["data"]}[REPO]
    assert row["files"] == "no weights" and row["chat"]["ready"]


# ---------------------------------------------------------------------------------------------- one GGUF
@pytest.mark.slow
def test_pull_one_gguf_then_run_it_by_that_name(hub, tmp_path, smollm2_gguf):
    name = f"{GGUF_REPO}/{GGUF_FILE}"
    asked_before = len(hub.file_requests(GGUF_REPO, "base.gguf"))
    proc = turnspec(hub, tmp_path, "pull", name, "--json", "--profiles", tmp_path / "profiles")
    assert proc.returncode == 0, proc.stderr
    data = envelope(proc)["data"]
    assert data["files"] == [GGUF_FILE] and Path(data["path"]).name == GGUF_FILE
    gets = hub.file_requests(GGUF_REPO, GGUF_FILE, "GET")
    assert gets[0].range == "bytes=0-1048575" and gets[-1].range is None  # the header was read first
    assert len(hub.file_requests(GGUF_REPO, "base.gguf")) == asked_before  # the other GGUF was not touched
    assert sha256_of(Path(data["path"])) == sha256_of(smollm2_gguf)
    assert (tmp_path / "profiles" / "HuggingFaceTB--SmolLM2-135M-Instruct.Q4_1.yaml").is_file()
    pytest.importorskip("llama_cpp", reason="running the GGUF needs llama-cpp-python")
    answer = turnspec(hub, tmp_path, "run", name, "-p", "What is the capital of France?", "--system", SYSTEM, "--json")
    assert answer.returncode == 0, answer.stderr
    assert "Paris" in envelope(answer)["data"]["content"]


# ---------------------------------------------------------------------------------------------- a hostile endpoint
ESCAPE = "../../../escaped"  # from <cache>/models--o--n/blobs: the folder that holds the cache


@pytest.fixture
def hostile(smollm2_dir, tmp_path):
    """An endpoint (a mirror, a proxy, plain http) whose answers name paths outside the cache."""
    chat = {p.name: p for p in smollm2_dir.iterdir() if p.is_file()}
    small = {**chat, "model.safetensors": b"weights " * 1000}
    outside = str(tmp_path / "abs-target")
    served = LocalHub([
        Repo("evil/plain-etag", small, etags={"tokenizer_config.json": ESCAPE}),
        Repo("evil/lfs-etag", small, etags={"model.safetensors": ESCAPE}),
        Repo("evil/absolute-etag", small, etags={"model.safetensors": outside}),
        Repo("evil/not-a-hash", small, etags={"tokenizer.json": "abc-123"}),
        Repo("evil/wrong-hash", small, etags={"model.safetensors": "0" * 64}),
        Repo("evil/commit", small, commit="../../../escaped"),
        Repo("evil/path", {**small, "additional_chat_templates/../../../../../escaped.jinja": b"{{ x }}"}),
    ])
    with served.running():
        yield served, tmp_path / "home", Path(outside)


def written_outside(home: Path, *targets: Path) -> list[Path]:
    """What a pull left at the target paths, their partial files and locks, or anywhere outside its cache."""
    found = [p for t in targets for p in (t, Path(f"{t}.incomplete"), Path(f"{t}.lock")) if os.path.lexists(p)]
    return found + [p for p in home.parent.iterdir() if p.name not in ("home", "served") and p.name != home.name]


@pytest.mark.parametrize("repo_id,says", [
    ("evil/plain-etag", "sent the ETag '../../../escaped', not a sha256 or git hash"),
    ("evil/lfs-etag", "sent the ETag '../../../escaped', not a sha256 or git hash"),
    ("evil/absolute-etag", "not a sha256 or git hash"),
    ("evil/not-a-hash", "sent the ETag 'abc-123'"),
    ("evil/wrong-hash", "do not match the Hub's checksum"),
    ("evil/commit", "named the commit '../../../escaped', not a 40-digit git hash"),
    ("evil/path", "whose path leaves the model's folder"),
])
def test_a_hostile_endpoint_cannot_make_pull_write_outside_the_cache(hostile, repo_id, says):
    served, home, outside = hostile
    home.mkdir()
    proc = turnspec(served, home, "pull", repo_id, "--json", "--profiles", home / "profiles")
    one_line_error(proc, 6, repo_id, says)
    assert envelope(proc)["error"]["code"] == "download_failed"
    assert written_outside(home, home.parent / "escaped", outside) == []
    assert not list((home / "hub").glob("**/*.incomplete"))  # a refused file leaves no partial blob either
