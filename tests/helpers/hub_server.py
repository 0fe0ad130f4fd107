"""A Hugging Face Hub-compatible HTTP endpoint on loopback, for `turnspec pull` tests (HF_ENDPOINT points at it).

It answers what huggingface_hub asks: `GET /api/models/<repo>[/revision/<rev>]` (model info with file sizes and
blob ids), `GET /api/models/<repo>/tree/<rev>`, and `HEAD`/`GET /<repo>/resolve/<rev>/<path>` with the Hub's
headers (X-Repo-Commit, ETag: the sha256 for LFS files, the git blob id otherwise; X-Linked-Size) and byte ranges.
Gated and private repos refuse files the way the Hub does (X-Error-Code GatedRepo / RepoNotFound). Every request
is recorded, and a download can be held after N bytes (to interrupt a pull at a known point). A repo can play a
hostile endpoint: other ETags for some files (`etags`), a commit that is not a hash, paths that leave the repo.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")


@dataclass
class Repo:
    repo_id: str
    files: dict[str, Path | bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    gated: bool = False
    private: bool = False
    allowed_tokens: tuple[str, ...] = ()
    etags: dict[str, str] = field(default_factory=dict)  # path -> the ETag a hostile endpoint sends instead
    _meta: dict[str, dict] = field(default_factory=dict, repr=False)

    def meta(self, path: str) -> dict:
        """size, etag (sha256 for LFS files, git blob sha1 otherwise) and whether it is an LFS file."""
        if path not in self._meta:
            content = self.files[path]
            size = content.stat().st_size if isinstance(content, Path) else len(content)
            sha256, git = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
            with self.open(path) as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    sha256.update(chunk)
                    git.update(chunk)
            lfs = path.endswith(LFS_SUFFIXES)
            self._meta[path] = {"size": size, "etag": sha256.hexdigest() if lfs else git.hexdigest(), "lfs": lfs,
                                "blob_id": git.hexdigest()}
        return self._meta[path]

    def open(self, path: str):
        content = self.files[path]
        return open(content, "rb") if isinstance(content, Path) else _BytesReader(content)


class _BytesReader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def seek(self, pos: int) -> None:
        self.pos = pos

    def read(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


@dataclass
class Hold:
    """Stop sending `path` after `after` bytes until `release` is set; `reached` says the bytes went out."""

    path: str
    after: int
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    token: str | None


class LocalHub:
    def __init__(self, repos: list[Repo]):
        self.repos = {r.repo_id: r for r in repos}
        self.requests: list[Request] = []
        self.holds: dict[str, Hold] = {}
        self.url = ""

    def hold(self, repo_id: str, path: str, after: int) -> Hold:
        h = Hold(path, after)
        self.holds[f"{repo_id}/{path}"] = h
        return h

    def file_requests(self, repo_id: str, path: str, method: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(f"/{repo_id}/resolve/") and r.path.endswith(f"/{path}")
                and (method is None or r.method == method)]

    @contextmanager
    def running(self) -> Iterator["LocalHub"]:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            for h in self.holds.values():
                h.release.set()
            server.shutdown()
            server.server_close()


_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?P<sub>/.*)?)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # --------------------------------------------------------------------------------------------- routing
    def _route(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or None
        self.hub.requests.append(Request(self.command, path, self.headers.get("Range"), token))
        if m := _API.match(path):
            return self._api(m, token)
        if m := _RESOLVE.match(path):
            return self._resolve(m, token, head)
        self._error(404, "EntryNotFound", "not found")

    def _repo(self, repo_id: str, token: str | None, files: bool) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.allowed_tokens):
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if files and repo.gated and token not in repo.allowed_tokens:
            if token is None:
                self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it "
                                              "and be authenticated to access it. Please log in.")
            else:
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the "
                                              "authorized list. Visit https://huggingface.co/" + repo_id + " to ask for access.")
            return None
        return repo

    def _revision_ok(self, repo: Repo, rev: str) -> bool:
        if rev in ("main", repo.commit):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return False

    def _api(self, m: re.Match, token: str | None) -> None:
        repo = self._repo(m["repo"], token, files=False)
        if repo is None or (m["rev"] and not self._revision_ok(repo, m["rev"])):
            return
        if m["kind"] == "tree":
            body = [{"type": "file", "path": p, "size": repo.meta(p)["size"], "oid": repo.meta(p)["blob_id"],
                     **({"lfs": {"oid": repo.meta(p)["etag"], "size": repo.meta(p)["size"], "pointerSize": 134}}
                        if repo.meta(p)["lfs"] else {})} for p in sorted(repo.files)]
        else:
            siblings = []
            for p in sorted(repo.files):
                meta = repo.meta(p)
                sib = {"rfilename": p, "size": meta["size"], "blobId": meta["blob_id"]}
                if meta["lfs"]:
                    sib["lfs"] = {"sha256": meta["etag"], "size": meta["size"], "pointerSize": 134}
                siblings.append(sib)
            body = {"_id": repo.repo_id, "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit,
                    "private": repo.private, "gated": "manual" if repo.gated else False, "disabled": False,
                    "tags": [], "downloads": 0, "likes": 0, "siblings": siblings,
                    "lastModified": "2024-11-01T00:00:00.000Z", "createdAt": "2024-10-31T00:00:00.000Z"}
        self._json(200, body)

    def _resolve(self, m: re.Match, token: str | None, head: bool) -> None:
        repo = self._repo(m["repo"], token, files=True)
        if repo is None or not self._revision_ok(repo, m["rev"]):
            return
        path = m["path"]
        if path not in repo.files:
            self._error(404, "EntryNotFound", f"{path} does not exist", commit=repo.commit)
            return
        meta = repo.meta(path)
        size = meta["size"]
        start, end = 0, size - 1
        status = 200
        if (rng := self.headers.get("Range")) and not head:
            rm = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if rm:
                start, end = int(rm[1]), min(int(rm[2]) if rm[2] else size - 1, size - 1)
                if start >= size:
                    self._error(416, None, "range not satisfiable")
                    return
                status = 206
        self.send_response(status)
        self.send_header("X-Repo-Commit", repo.commit)
        etag = repo.etags.get(path, meta["etag"])
        self.send_header("ETag", f'"{etag}"')
        if meta["lfs"]:
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1 if not head else size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        hold = self.hub.holds.get(f"{repo.repo_id}/{path}")
        if hold is not None and not hold.reached.is_set():
            self._send(repo, path, start, min(end, start + hold.after - 1))
            hold.reached.set()
            hold.release.wait(120)
            self.close_connection = True
            return
        self._send(repo, path, start, end)

    # --------------------------------------------------------------------------------------------- replies
    def _send(self, repo: Repo, path: str, start: int, end: int) -> None:
        try:
            with repo.open(path) as fh:
                fh.seek(start)
                left = end - start + 1
                while left > 0:
                    chunk = fh.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
