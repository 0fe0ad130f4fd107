"""`turnspec pull`: decide what to fetch, check that the model can chat before the big files, fetch resumably.

Order matters: the Hub is asked what the repo holds (a missing or private repo fails here); then the small chat
files are fetched (a gated repo without access fails here, on a few kB) and the template is looked for (a base
model fails here, "said before downloading weights"); for a single GGUF the header is read with range requests
instead. Only then are the weights fetched, after a disk-space check, with a record of the unfinished pull in the
cache (`catalog/pending.py`) so `list` shows it and the next pull resumes it.
"""

from __future__ import annotations

import fnmatch
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

from ..catalog.files import SAFETENSORS_INDEX, PYTORCH_WEIGHTS, human_size, shard_names
from ..catalog.pending import INCOMPLETE, PendingPull, clear_pending, write_pending
from ..errors import DownloadError, ModelSourceError, NoChatTemplateError, NotFoundError, TurnspecError
from .fetch import fetch_file
from .remote import RemoteFile, RemoteRepo, remote_gguf_header, repo_info

# Weight and export formats turnspec never needs by default (one model format is enough).
OTHER_FORMATS = (".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".onnx_data", ".h5", ".msgpack", ".ot", ".tflite",
                 ".mlmodel", ".npz", ".safetensors")


class PullProgress(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def file(self, path: str) -> None: ...
    def advance(self, n: int) -> None: ...


class _Silent:
    def start(self, total: int, done: int) -> None: ...
    def file(self, path: str) -> None: ...
    def advance(self, n: int) -> None: ...


@dataclass
class PullPlan:
    """What `turnspec pull NAME` fetches: the chat files first, then the weights (for a GGUF: its shards)."""

    name: str
    repo: RemoteRepo
    chat: list[RemoteFile]
    weights: list[RemoteFile]
    gguf: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.chat + self.weights)


@dataclass
class PullResult:
    name: str
    repo_id: str
    revision: str
    commit: str
    path: Path  # what loads the model: the snapshot folder, or the GGUF's first shard
    files: list[str]
    total_bytes: int
    downloaded_bytes: int = 0
    resumed_bytes: int = 0
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    @property
    def bytes_per_s(self) -> float | None:
        return self.downloaded_bytes / self.seconds if self.seconds > 0 and self.downloaded_bytes else None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
                "path": str(self.path), "files": self.files, "total_bytes": self.total_bytes,
                "downloaded_bytes": self.downloaded_bytes, "resumed_bytes": self.resumed_bytes,
                "seconds": round(self.seconds, 3), "bytes_per_s": self.bytes_per_s}


# ------------------------------------------------------------------------------------------------------ plan
def plan_pull(name: str, *, revision: str = "main", include: Iterable[str] = (), tokenizer_only: bool = False) -> PullPlan:
    """Ask the Hub about NAME ("org/name" or "org/name/file.gguf") and pick the files to fetch."""
    from ..sources.hf_cache import TOKENIZER_FILE_PATTERNS, hub_offline, is_repo_id, split_gguf_name

    split = split_gguf_name(name)
    repo_id, gguf = split if split else (name, None)
    if not is_repo_id(repo_id):
        raise ModelSourceError(f"{name}: not a Hugging Face repo id; expected org/name or org/name/file.gguf")
    if hub_offline():
        raise DownloadError(f"{name}: HF_HUB_OFFLINE is set; unset it to pull from the Hugging Face Hub")
    repo = repo_info(repo_id, revision)
    if gguf is not None:
        shards = shard_names(gguf)
        missing = [s for s in shards if s not in repo.files]
        if missing:
            have = sorted(p for p in repo.files if p.lower().endswith(".gguf"))
            hint = f"; it has {', '.join(have[:6])}{' …' if len(have) > 6 else ''}" if have else "; it has no GGUF"
            raise NotFoundError(f"{repo_id}: the Hub has no {missing[0]} in it{hint}")
        return PullPlan(name, repo, [], [repo.files[s] for s in shards], gguf)
    chat = [f for p, f in sorted(repo.files.items()) if any(fnmatch.fnmatch(p, pat) for pat in TOKENIZER_FILE_PATTERNS)]
    if tokenizer_only:
        return PullPlan(name, repo, chat, [])
    patterns = list(include)
    if patterns:
        weights = [f for p, f in sorted(repo.files.items()) if f not in chat and any(fnmatch.fnmatch(p, pat)
                                                                                   for pat in patterns)]
        if not weights:
            raise NotFoundError(f"{repo_id}: no file matches --include {' '.join(patterns)}; its files: "
                                f"{', '.join(sorted(repo.files)[:8])}")
    else:
        weights = _default_files(repo, chat)
    return PullPlan(name, repo, chat, weights)


def _default_files(repo: RemoteRepo, chat: list[RemoteFile]) -> list[RemoteFile]:
    """Top-level files, with the weights in one format only: safetensors, else PyTorch .bin. A repo of GGUFs
    holds one model per file: the user names the one to pull."""
    top = [p for p in sorted(repo.files) if "/" not in p and repo.files[p] not in chat]
    safetensors = [p for p in top if p.endswith(".safetensors")]
    pytorch = [p for p in top if PYTORCH_WEIGHTS.match(p)]
    if safetensors:
        weights = safetensors + [p for p in top if p == SAFETENSORS_INDEX]
    elif pytorch:
        weights = pytorch + [p for p in top if p == "pytorch_model.bin.index.json"]
    else:
        ggufs = sorted(p for p in repo.files if p.lower().endswith(".gguf"))
        if ggufs:
            raise TurnspecError(f"{repo.repo_id} holds GGUF files, one model each ({', '.join(ggufs[:5])}"
                                f"{' …' if len(ggufs) > 5 else ''}); pull one: turnspec pull {repo.repo_id}/{ggufs[0]}")
        weights = []
    others = [p for p in top if not p.lower().endswith(OTHER_FORMATS) and p not in weights]
    return [repo.files[p] for p in others + weights]


# ------------------------------------------------------------------------------------------------------ pull
def pull(plan: PullPlan, *, cache_dir: Path | None = None, force: bool = False,
         progress: PullProgress | None = None) -> PullResult:
    """Fetch the plan into the HF cache. Raises before any weight is downloaded when the model cannot chat
    (no template; `force` downloads anyway) or cannot be accessed."""
    from ..sources.hf_cache import hub_cache_dir

    progress = progress or _Silent()
    repo = plan.repo
    root = hub_cache_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    storage = root / ("models--" + repo.repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / repo.commit
    result = PullResult(plan.name, repo.repo_id, repo.revision, repo.commit,
                        snapshot / plan.weights[0].path if plan.gguf else snapshot,
                        [f.path for f in plan.chat + plan.weights], plan.total_bytes)
    started = time.perf_counter()
    counted = _Counter(progress)
    for f in plan.chat:  # small; a gated repo refuses the first of them
        fetch_file(repo.repo_id, f.path, repo.commit, root, counted.add)
    if plan.chat:
        _write_ref(storage, repo)
    _check_template(plan, snapshot, force, result.notices)
    todo = [f for f in plan.weights if not (snapshot / f.path).exists()]
    if todo:
        write_pending(storage, PendingPull(repo.repo_id, repo.commit, {f.path: {"size": f.size, "etag": f.etag}
                                                                        for f in todo}, name=plan.name))
        on_disk = {f.path: _partial_bytes(storage, f) for f in todo}
        result.resumed_bytes = sum(on_disk.values())
        _check_space(root, sum((f.size or 0) - on_disk[f.path] for f in todo), plan.name)
        progress.start(sum(f.size or 0 for f in todo), result.resumed_bytes)
        counted.shown = True
        for f in todo:
            progress.file(f.path)
            fetch_file(repo.repo_id, f.path, repo.commit, root, counted.add)
        _write_ref(storage, repo)
        clear_pending(storage)
    result.downloaded_bytes = counted.total
    result.seconds = time.perf_counter() - started
    return result


class _Counter:
    """Bytes that came over the network; shown on the progress bar once it started (the chat files are not)."""

    def __init__(self, progress: PullProgress):
        self.progress, self.total, self.shown = progress, 0, False

    def add(self, n: int) -> None:
        self.total += n
        if self.shown:
            self.progress.advance(n)


def _check_template(plan: PullPlan, snapshot: Path, force: bool, notices: list[str]) -> None:
    """NoChatTemplateError (exit 5) for a base model, before its weights are fetched; `force` makes it a notice."""
    name = plan.name
    if plan.gguf is not None:
        from ..sources.gguf import chat_templates, read_gguf_metadata

        local = snapshot / plan.gguf
        meta = read_gguf_metadata(local) if local.is_file() else remote_gguf_header(plan.repo, plan.gguf)
        if meta is None:
            notices.append(f"{name}: its GGUF header is larger than 64 MB; the chat template is checked after the "
                           "download")
            return
        found = bool(chat_templates(meta))
    else:
        from ..sources import resolve

        try:
            found = bool(resolve(snapshot).templates) if snapshot.is_dir() else False
        except ModelSourceError as exc:
            if not force:
                raise
            notices.append(str(exc))
            return
    if found:
        return
    message = (f"{name} has no chat template (a base model?): turnspec chats only with models that have one; nothing "
               "big was downloaded. Pass --force to pull it anyway (then run it with --template FILE)")
    if not force:
        raise NoChatTemplateError(message)
    notices.append(f"{name} has no chat template (a base model?); pulled anyway (--force): run it with --template FILE")


def _partial_bytes(storage: Path, f: RemoteFile) -> int:
    partial = storage / "blobs" / f"{f.etag}{INCOMPLETE}"
    return partial.stat().st_size if f.etag and partial.is_file() else 0


def _check_space(root: Path, needed: int, name: str) -> None:
    free = shutil.disk_usage(root).free
    if needed > free:
        raise DownloadError(f"{name}: needs {human_size(needed)} more in {root} but only {human_size(free)} is free; "
                            "free some space (turnspec list, turnspec rm) and pull again")


def _write_ref(storage: Path, repo: RemoteRepo) -> None:
    """`refs/<revision>` names the commit, as huggingface_hub writes it (no trailing newline): `turnspec run
    org/name` finds the snapshot through it."""
    from ..onboard.profile import write_atomic

    if repo.revision == repo.commit or not (storage / "snapshots" / repo.commit).is_dir():
        return
    ref = storage / "refs" / repo.revision
    try:
        if ref.read_text(encoding="utf-8") == repo.commit:
            return
    except OSError:
        pass
    write_atomic(ref, repo.commit)
