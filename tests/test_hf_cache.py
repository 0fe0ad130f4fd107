"""The Hugging Face cache as a model source, on a fake cache in the hub's real on-disk layout. Never the network."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from turnspec.errors import ModelSourceError
from turnspec.sources import hf_cache
from turnspec.sources.hf_cache import (
    CachedModel,
    download_tokenizer_files,
    find_cached_snapshot,
    hub_cache_dir,
    list_cached_models,
    looks_like_repo_id,
)

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
COMMIT = "12fd25f77366fa6b3b4b768ec3050bf629380bac"
_ENV = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """A clean HF environment, offline, with sockets refused: a test that reaches for the network fails fast."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network disabled in turnspec tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def add_repo(cache: Path, repo_id: str, files: dict[str, Path | bytes], *, commit: str = COMMIT,
             ref: str | None = "main") -> Path:
    """Lay out `repo_id` like huggingface_hub does: blobs/<sha>, snapshots/<commit>/<file> -> blob, refs/<ref>."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(os.path.relpath(blob, target.parent))
        except OSError:  # no symlinks (Windows without developer mode): the hub copies too
            shutil.copyfile(blob, target)
    snapshot.mkdir(parents=True, exist_ok=True)
    if ref is not None:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)  # the hub writes no trailing newline
    return snapshot


@pytest.fixture
def cache(tmp_path, smollm2_dir) -> Path:
    """A hub cache holding the real SmolLM2 chat files (and a non-model folder the hub also keeps there)."""
    root = tmp_path / "hub"
    files = {p.name: p for p in smollm2_dir.iterdir() if p.is_file()}
    add_repo(root, REPO, files)
    (root / ".locks" / ("models--" + REPO.replace("/", "--"))).mkdir(parents=True)
    add_repo(root, "some/dataset", {"data.json": b"{}"})
    (root / "models--some--dataset").rename(root / "datasets--some--dataset")
    return root


# ---------------------------------------------------------------- find_cached_snapshot


def test_found_via_cache_dir(cache, smollm2_dir):
    snapshot = find_cached_snapshot(REPO, cache_dir=cache)
    assert snapshot == cache / f"models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/{COMMIT}"
    config = json.loads((snapshot / "tokenizer_config.json").read_text())
    assert config == json.loads((smollm2_dir / "tokenizer_config.json").read_text())


def test_found_via_hf_hub_cache_set_after_huggingface_hub_was_imported(cache, monkeypatch):
    """huggingface_hub froze its cache path at import; turnspec must read the variable at call time."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert Path(constants.HF_HUB_CACHE) != cache
    assert hub_cache_dir() == cache
    assert find_cached_snapshot(REPO) == cache / f"models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/{COMMIT}"


def test_found_via_hf_home(cache, tmp_path, monkeypatch):
    home = tmp_path / "hf-home"
    home.mkdir()
    cache.rename(home / "hub")
    monkeypatch.setenv("HF_HOME", str(home))
    expected = home / "hub" / f"models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/{COMMIT}"
    assert find_cached_snapshot(REPO) == expected


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert hub_cache_dir() == tmp_path / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub_cache_dir() == tmp_path / "hub"
    assert hub_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_default_cache_is_under_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub_cache_dir() == tmp_path / ".cache" / "huggingface" / "hub"


def test_explicit_cache_dir_beats_the_environment(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert find_cached_snapshot(REPO) is None
    assert find_cached_snapshot(REPO, cache_dir=cache) is not None


def test_missing_repo_or_revision_is_none(cache, tmp_path):
    assert find_cached_snapshot("nobody/nothing", cache_dir=cache) is None
    assert find_cached_snapshot(REPO, cache_dir=cache, revision="v9") is None
    assert find_cached_snapshot(REPO, cache_dir=cache, revision="f" * 40) is None
    assert find_cached_snapshot(REPO, cache_dir=tmp_path / "no-cache-here") is None


def test_commit_hash_and_tag_revisions(cache):
    by_commit = find_cached_snapshot(REPO, cache_dir=cache, revision=COMMIT)
    assert by_commit is not None and by_commit.name == COMMIT
    other = "0" * 40
    add_repo(cache, REPO, {"config.json": b"{}"}, commit=other, ref="v1.0")
    assert find_cached_snapshot(REPO, cache_dir=cache, revision="v1.0").name == other
    assert find_cached_snapshot(REPO, cache_dir=cache).name == COMMIT


def test_ref_to_a_deleted_snapshot_is_none(cache):
    shutil.rmtree(cache / f"models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/{COMMIT}")
    assert find_cached_snapshot(REPO, cache_dir=cache) is None


def test_lookup_is_fast_and_offline(cache):
    start = time.perf_counter()
    for _ in range(100):
        find_cached_snapshot(REPO, cache_dir=cache)
        find_cached_snapshot("nobody/nothing", cache_dir=cache)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------- list_cached_models


def test_list_cached_models(cache):
    gguf_snapshot = add_repo(
        cache, "bartowski/Tiny-GGUF",
        {"Tiny-Q4_K_M.gguf": b"GGUF fake", "sub/Tiny-Q8_0.gguf": b"GGUF fake 2", "config.json": b"{}"},
    )
    unreferenced = add_repo(cache, "org/pinned", {"tokenizer_config.json": b"{}"}, commit="1" * 40, ref=None)
    models = list_cached_models(cache)
    assert [m.repo_id for m in models] == ["bartowski/Tiny-GGUF", REPO, "org/pinned"]
    gguf, smol, pinned = models
    assert gguf == CachedModel(
        repo_id="bartowski/Tiny-GGUF", snapshot=gguf_snapshot, has_chat_files=False,
        gguf_files=(gguf_snapshot / "Tiny-Q4_K_M.gguf", gguf_snapshot / "sub" / "Tiny-Q8_0.gguf"),
    )
    assert smol.has_chat_files and smol.gguf_files == ()
    assert smol.snapshot == find_cached_snapshot(REPO, cache_dir=cache)
    assert pinned.snapshot == unreferenced and pinned.has_chat_files


def test_list_uses_the_environment(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert [m.repo_id for m in list_cached_models()] == [REPO]


def test_list_of_a_missing_or_empty_cache_is_empty(tmp_path):
    assert list_cached_models(tmp_path / "absent") == []
    assert list_cached_models(tmp_path) == []
    (tmp_path / "models--org--broken").mkdir()  # interrupted download: no snapshot yet
    assert list_cached_models(tmp_path) == []


# ---------------------------------------------------------------- looks_like_repo_id


@pytest.mark.parametrize("text", [REPO, "Qwen/Qwen2.5-0.5B-Instruct", "openai/gpt-oss-20b", "a/b", "org_1/x.y"])
def test_repo_ids(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert looks_like_repo_id(text)


@pytest.mark.parametrize(
    "text",
    ["gpt2", "", "/abs/path", "./org/name", "~/models", "org/name/sub", "org//name", "org/na me", "org/-name",
     "org/name.", "org/na--me", "org/na..me", "C:/models", "model.gguf", "org/" + "x" * 97],
)
def test_not_repo_ids(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_like_repo_id(text)


def test_an_existing_path_is_not_a_repo_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not looks_like_repo_id("org/name")
    assert looks_like_repo_id("org/other")


# ---------------------------------------------------------------- download_tokenizer_files


def test_offline_download_is_a_one_line_error(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ModelSourceError, match="HF_HUB_OFFLINE") as err:
        download_tokenizer_files(REPO, cache_dir=tmp_path)
    assert "\n" not in str(err.value) and REPO in str(err.value)
    assert time.perf_counter() - start < 2.0


def test_offline_download_of_a_cached_repo_returns_its_snapshot(cache):
    assert download_tokenizer_files(REPO, cache_dir=cache) == find_cached_snapshot(REPO, cache_dir=cache)


@pytest.fixture
def online(monkeypatch):
    """Offline switched off, but the Hub endpoint pointed at a closed local port (and sockets still refused)."""
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")


def test_unreachable_hub_is_a_one_line_error(online, tmp_path):
    start = time.perf_counter()
    with pytest.raises(ModelSourceError, match="cannot reach the Hugging Face Hub") as err:
        download_tokenizer_files(REPO, cache_dir=tmp_path)
    assert "\n" not in str(err.value)
    assert time.perf_counter() - start < 30


def test_download_asks_only_for_the_small_chat_files(online, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "env-cache"))
    assert download_tokenizer_files(REPO) == tmp_path / "snap"
    [(repo_id, kwargs)] = calls
    assert repo_id == REPO
    assert Path(kwargs["cache_dir"]) == tmp_path / "env-cache"  # the environment as it is now
    patterns = kwargs["allow_patterns"]
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
                 "generation_config.json", "special_tokens_map.json", "config.json"):
        assert name in patterns
    assert not any(p.startswith("*") or p.endswith((".safetensors", ".gguf", ".bin")) for p in patterns)


def _hub_error(name: str) -> Exception:
    """An instance of a huggingface_hub error without building an HTTP response for it."""
    import huggingface_hub.errors as errors

    cls = getattr(errors, name)
    err = cls.__new__(cls)
    Exception.__init__(err, f"401 Client Error: {name}\nmore lines\nof detail")
    return err


@pytest.mark.parametrize(
    "error,message",
    [
        ("GatedRepoError", "gated"),
        ("RepositoryNotFoundError", "no such model"),
        ("RevisionNotFoundError", "revision"),
        ("LocalEntryNotFoundError", "cannot reach"),
        ("HFValidationError", "not a valid"),
        ("HfHubHTTPError", "401 Client Error"),
    ],
)
def test_hub_errors_become_one_line_model_source_errors(online, tmp_path, monkeypatch, error, message):
    import huggingface_hub

    def failing(*args, **kwargs):
        raise _hub_error(error)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(ModelSourceError, match=message) as err:
        download_tokenizer_files(REPO, cache_dir=tmp_path)
    assert "\n" not in str(err.value) and REPO in str(err.value)


# ---------------------------------------------------------------- through turnspec's source resolver


def test_resolve_loads_a_cached_repo(cache, monkeypatch):
    from turnspec.sources import resolve

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    files = resolve(REPO)
    assert files.origin == "hf-cache" and files.name == REPO
    assert hf_cache.find_cached_snapshot(REPO) == Path(files.path)
