"""A Hugging Face Hub protocol server for tests: the REAL huggingface_hub client talks to it.

Run as a subprocess on 127.0.0.1 (``HubServer(root).start()``); point ``HF_ENDPOINT`` at
``server.url``. Two listeners share one state: the *hub* (API, ``/resolve``, uploads) and a
*CDN* on another port, so LFS downloads get a 302 to a different origin exactly like the real
hub's redirect to its CDN (huggingface_hub then stops at the 302, reads ``X-Linked-Etag`` /
``X-Linked-Size`` from it and drops the Authorization header for the CDN).

Storage under ``root`` (tests write it with :func:`publish`; the server re-reads it on every
request, so repos can be added while it runs)::

    objects/<sha256>                 file contents, content-addressed
    repos/<quoted repo id>.json      {id, private, gated, branches, tags, commits{sha: {parent,
                                      message, files{path: {sha256, git_oid, size, lfs}}}}}

Fault injection per object (key: the file's sha256, or ``"*"``), set with
:meth:`HubServer.set_faults` (POST ``/_control/faults``) or ``--faults FILE`` at start:
``cut_at`` (close the connection when the transfer reaches this file offset), ``corrupt``
(flip bytes, size kept), ``throttle`` (bytes/s), ``status`` (answer this HTTP status),
``etag`` (advertise this ETag instead of the real one), ``times`` (how many GETs it affects).
``GET /_control/stats`` reports bytes served per object.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".npz", ".pt", ".h5", ".onnx", ".msgpack")
LFS_MIN_SIZE = 10 * 1024 * 1024  # the hub stores bigger files in LFS whatever their suffix
CHUNK = 64 * 1024
EPOCH = "2025-01-01T00:00:00.000Z"

# ----------------------------------------------------------------------------- storage


def git_oid(data: bytes) -> str:
    """The git blob id: what the hub uses as ETag for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def is_lfs(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def _repo_file(root: Path, repo_id: str) -> Path:
    return root / "repos" / (quote(repo_id, safe="") + ".json")


def load_repo(root: Path, repo_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(_repo_file(root, repo_id).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def save_repo(root: Path, state: dict[str, Any]) -> None:
    path = _repo_file(root, state["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(state, indent=1), "utf-8")
    os.replace(tmp, path)  # the server may be reading it right now


def store_object(root: Path, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    path = root / "objects" / sha
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{sha}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return sha


def file_entry(path: str, sha256: str, size: int, lfs: bool | None = None) -> dict[str, Any]:
    lfs = is_lfs(path, size) if lfs is None else lfs
    return {"sha256": sha256, "size": size, "lfs": lfs, "git_oid": ""}


def _commit_sha(parent: str | None, message: str, files: Mapping[str, Any]) -> str:
    canon = json.dumps([parent, message, sorted((p, f["sha256"]) for p, f in files.items())])
    return hashlib.sha1(canon.encode()).hexdigest()


def add_commit(
    state: dict[str, Any], branch: str, files: dict[str, Any], message: str, parent: str | None
) -> str:
    sha = _commit_sha(parent, message, files)
    state["commits"][sha] = {"parent": parent, "message": message, "files": files}
    state["branches"][branch] = sha
    return sha


def new_repo(repo_id: str, *, private: bool = False, gated: bool | str = False) -> dict[str, Any]:
    return {"id": repo_id, "private": private, "gated": gated, "branches": {}, "tags": {},
            "commits": {}}  # fmt: skip


def publish(
    root: Path,
    repo_id: str,
    files: Mapping[str, bytes],
    *,
    branch: str = "main",
    message: str = "publish",
    gated: bool | str | None = None,
    private: bool | None = None,
    lfs: Mapping[str, bool] | None = None,
) -> str:
    """Make ``files`` (the complete tree) the new head of ``branch``; returns the commit sha.

    A new branch starts from main. ``lfs`` forces a file into or out of LFS.
    """
    state = load_repo(root, repo_id) or new_repo(repo_id)
    if gated is not None:
        state["gated"] = gated
    if private is not None:
        state["private"] = private
    tree: dict[str, Any] = {}
    for path, data in files.items():
        entry = file_entry(path, store_object(root, data), len(data), (lfs or {}).get(path))
        entry["git_oid"] = _git_oid_for(entry, data)
        tree[path] = entry
    parent = state["branches"].get(branch) or state["branches"].get("main")
    sha = add_commit(state, branch, tree, message, parent)
    save_repo(root, state)
    return sha


def _git_oid_for(entry: Mapping[str, Any], data: bytes) -> str:
    if entry["lfs"]:
        return git_oid(lfs_pointer(entry["sha256"], entry["size"]))
    return git_oid(data)


def add_tag(root: Path, repo_id: str, tag: str, commit: str) -> None:
    state = load_repo(root, repo_id)
    assert state is not None
    state["tags"][tag] = commit
    save_repo(root, state)


# ----------------------------------------------------------------------------- server state


@dataclass
class HubState:
    root: Path
    tokens: frozenset[str]
    hub_url: str = ""
    cdn_url: str = ""
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, sha: str, consume: bool) -> dict[str, Any] | None:
        """The fault for this object, counting one use when ``consume`` (a GET)."""
        with self.lock:
            key = sha if sha in self.faults else "*" if "*" in self.faults else None
            if key is None:
                return None
            spec = self.faults[key]
            if consume and "times" in spec:
                spec["times"] -= 1
                if spec["times"] <= 0:
                    del self.faults[key]
            return dict(spec)

    def count(self, sha: str, key: str, n: int) -> None:
        with self.lock:
            entry = self.stats.setdefault(sha, {"bytes_served": 0, "gets": 0, "heads": 0})
            entry[key] = entry.get(key, 0) + n


def resolve_rev(state: Mapping[str, Any], rev: str) -> str | None:
    """Branch, tag, full commit or a unique commit prefix (7+ hex) → commit sha."""
    for table in ("branches", "tags"):
        if rev in state[table]:
            return str(state[table][rev])
    if rev in state["commits"]:
        return rev
    if re.fullmatch(r"[0-9a-f]{7,40}", rev):
        hits = [c for c in state["commits"] if c.startswith(rev)]
        if len(hits) == 1:
            return hits[0]
    return None


# ----------------------------------------------------------------------------- handlers

API_RE = re.compile(
    r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)"
    r"(?:/(?P<op>revision|tree|refs|preupload|commit|branch|paths-info)(?:/(?P<rest>.*))?)?$"
)
RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
LFS_BATCH_RE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)\.git/info/lfs/objects/batch$")
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class HttpError(Exception):
    def __init__(self, status: int, code: str | None, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like the real hub; every reply has a length
    server_version = "hubserver/1"
    hub: HubState

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("HUBSERVER_LOG"):
            sys.stderr.write("hubserver: " + (format % args) + "\n")

    # -- plumbing -------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        try:
            self.route(method)
        except HttpError as exc:
            self._error(exc)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def route(self, method: str) -> None:
        raise HttpError(404, None, "not found")

    def _error(self, exc: HttpError) -> None:
        body = json.dumps({"error": exc.message}).encode()
        headers = {"Content-Type": "application/json", "X-Error-Message": exc.message}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        self.send_bytes(exc.status, body, {**headers, **exc.headers})

    def send_bytes(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(
        self, data: Any, status: int = 200, content_type: str = "application/json"
    ) -> None:
        self.send_bytes(status, json.dumps(data).encode(), {"Content-Type": content_type})

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts = []
        for _ in range(1 << 20):  # bounded: a chunk count no real upload reaches
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        return b"".join(parts)

    def token_ok(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.hub.tokens

    # -- serving an object with Range and faults -----------------------------------------

    def serve_object(self, sha: str, size: int, headers: dict[str, str]) -> None:
        fault = self.hub.fault(sha, consume=self.command == "GET")
        if fault and "status" in fault:
            raise HttpError(int(fault["status"]), None, "injected failure")
        start, end = self._range(size)
        status = 206 if (start, end) != (0, size) else 200
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self.send_response(status)
        for key, value in {**headers, "Accept-Ranges": "bytes"}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if self.command == "HEAD":
            self.hub.count(sha, "heads", 1)
            return
        self.hub.count(sha, "gets", 1)
        self._stream(sha, start, end, fault or {})

    def _range(self, size: int) -> tuple[int, int]:
        raw = self.headers.get("Range")
        if not raw:
            return 0, size
        m = RANGE_RE.match(raw.strip())
        if not m or (not m[1] and not m[2]):
            raise HttpError(416, None, "bad range", **{"Content-Range": f"bytes */{size}"})
        if not m[1]:  # suffix range: the last N bytes
            return max(0, size - int(m[2])), size
        start = int(m[1])
        end = min(size, int(m[2]) + 1) if m[2] else size
        if start >= size or start >= end:
            raise HttpError(
                416, None, "range not satisfiable", **{"Content-Range": f"bytes */{size}"}
            )
        return start, end

    def _stream(self, sha: str, start: int, end: int, fault: Mapping[str, Any]) -> None:
        cut = fault.get("cut_at")
        stop = min(end, int(cut)) if cut is not None else end
        rate = float(fault.get("throttle") or 0)
        began, sent = time.monotonic(), 0
        with open(self.hub.root / "objects" / sha, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos < stop:
                chunk = fh.read(min(CHUNK, stop - pos))
                if not chunk:
                    break
                if fault.get("corrupt"):
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                self.wfile.write(chunk)
                pos += len(chunk)
                sent += len(chunk)
                self.hub.count(sha, "bytes_served", len(chunk))
                if rate:
                    time.sleep(max(0.0, began + sent / rate - time.monotonic()))
        if stop < end:  # the injected cut: drop the connection mid-body
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class CdnHandler(BaseHandler):
    """``/objects/<sha256>``: plain bytes with Range, like a CDN in front of LFS storage."""

    def route(self, method: str) -> None:
        m = re.match(r"^/objects/([0-9a-f]{64})$", urlsplit(self.path).path)
        if method not in ("GET", "HEAD") or not m:
            raise HttpError(404, None, "not found")
        path = self.hub.root / "objects" / m[1]
        if not path.is_file():
            raise HttpError(404, None, "no such object")
        etag = '"' + hashlib.md5(m[1].encode()).hexdigest() + '"'  # an S3-style ETag, not the sha
        self.serve_object(m[1], path.stat().st_size, {"ETag": etag,
                          "Content-Type": "application/octet-stream"})  # fmt: skip


class HubHandler(BaseHandler):
    def route(self, method: str) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_control/"):
            return self.control(method, path)
        if path == "/api/repos/create" and method == "POST":
            return self.create_repo()
        if path == "/api/validate-yaml" and method == "POST":
            self.read_body()
            return self.send_json({"errors": [], "warnings": []})
        if path.startswith("/_lfs/"):
            return self.lfs_object(method, path)
        m = LFS_BATCH_RE.match(path)
        if m and method == "POST":
            return self.lfs_batch(unquote(m["repo"]))
        m = API_RE.match(path)
        if m:
            return self.api(method, unquote(m["repo"]), m["op"], m["rest"])
        m = RESOLVE_RE.match(path)
        if m and method in ("GET", "HEAD"):
            return self.resolve(unquote(m["repo"]), unquote(m["rev"]), unquote(m["path"]))
        raise HttpError(404, None, "not found")

    # -- repo lookup ---------------------------------------------------------------------

    def repo(self, repo_id: str, *, write: bool = False) -> dict[str, Any]:
        state = load_repo(self.hub.root, repo_id)
        visible = state is not None and (not state["private"] or self.token_ok())
        if not visible:
            raise HttpError(404, "RepoNotFound", f"Repository {repo_id} not found")
        assert state is not None
        if write and not self.token_ok():
            raise HttpError(401, None, "Invalid credentials in Authorization header")
        return state

    def commit_of(self, state: dict[str, Any], rev: str) -> str:
        sha = resolve_rev(state, rev)
        if sha is None:
            raise HttpError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return sha

    # -- read API --------------------------------------------------------------------------

    def api(self, method: str, repo_id: str, op: str | None, rest: str | None) -> None:
        writes = {"preupload": self.preupload, "commit": self.commit, "branch": self.branch}
        if method == "POST" and op in writes:
            return writes[op](repo_id, unquote(rest or "main"))
        if method not in ("GET", "HEAD"):
            raise HttpError(405, None, "method not allowed")
        if op is None or op == "revision":
            return self.info(repo_id, unquote(rest or "main"))
        if op == "tree":
            rev, _, sub = (rest or "main").partition("/")
            return self.tree(repo_id, unquote(rev), unquote(sub))
        if op == "refs":
            return self.refs(repo_id)
        raise HttpError(404, None, "not found")

    def info(self, repo_id: str, rev: str) -> None:
        state = self.repo(repo_id)
        sha = self.commit_of(state, rev)
        blobs = "blobs" in parse_qs(urlsplit(self.path).query)
        siblings = [
            _sibling(p, f, blobs) for p, f in sorted(state["commits"][sha]["files"].items())
        ]
        self.send_json({
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id,
            "modelId": repo_id, "author": repo_id.split("/")[0], "sha": sha,
            "lastModified": EPOCH, "createdAt": EPOCH, "private": state["private"],
            "gated": state["gated"], "disabled": False, "downloads": 0, "likes": 0,
            "tags": ["mlx"], "library_name": "mlx", "siblings": siblings,
        })  # fmt: skip

    def tree(self, repo_id: str, rev: str, sub: str) -> None:
        state = self.repo(repo_id)
        files = state["commits"][self.commit_of(state, rev)]["files"]
        recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[0]
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        out, dirs = [], set()
        for path, entry in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            tail = path[len(prefix) :]
            if "/" in tail and recursive.lower() not in ("1", "true"):
                dirs.add(prefix + tail.split("/")[0])
                continue
            out.append(_tree_file(path, entry))
        out += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)]
        self.send_json(out)

    def refs(self, repo_id: str) -> None:
        state = self.repo(repo_id)
        heads = [
            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": c}
            for b, c in sorted(state["branches"].items())
        ]
        tags = [
            {"name": t, "ref": f"refs/tags/{t}", "targetCommit": c}
            for t, c in sorted(state["tags"].items())
        ]
        self.send_json({"branches": heads, "tags": tags, "converts": [], "pullRequests": []})

    def resolve(self, repo_id: str, rev: str, path: str) -> None:
        state = self.repo(repo_id)
        if state["gated"] and not self.token_ok():
            msg = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated."
            raise HttpError(401, "GatedRepo", msg)
        sha = self.commit_of(state, rev)
        entry = state["commits"][sha]["files"].get(path)
        if entry is None:
            raise HttpError(
                404, "EntryNotFound", f"{path} does not exist", **{"X-Repo-Commit": sha}
            )
        fault = self.hub.fault(entry["sha256"], consume=False) or {}
        etag = str(fault.get("etag") or (entry["sha256"] if entry["lfs"] else entry["git_oid"]))
        headers = {"X-Repo-Commit": sha, "Content-Type": "application/octet-stream"}
        if entry["lfs"]:
            self.send_bytes(302, b"", {
                **headers, "ETag": f'"{entry["git_oid"]}"', "X-Linked-Etag": f'"{etag}"',
                "X-Linked-Size": str(entry["size"]),
                "Location": f"{self.hub.cdn_url}/objects/{entry['sha256']}?X-Amz-Signature=test",
            })  # fmt: skip
            return
        self.serve_object(entry["sha256"], entry["size"], {**headers, "ETag": f'"{etag}"'})

    # -- write API: what upload_folder / create_commit use ---------------------------------

    def create_repo(self) -> None:
        if not self.token_ok():
            raise HttpError(401, None, "Invalid credentials in Authorization header")
        body = json.loads(self.read_body() or b"{}")
        repo_id = (
            f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        )
        with self.hub.lock:
            if load_repo(self.hub.root, repo_id) is not None:
                raise HttpError(409, None, "You already created this model repo",
                                **{"X-Repo-Url": f"{self.hub.hub_url}/{repo_id}"})  # fmt: skip
            private = body.get("private") or body.get("visibility") == "private"
            state = new_repo(repo_id, private=bool(private))
            data = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
            attrs = file_entry(
                ".gitattributes", store_object(self.hub.root, data), len(data), False
            )
            attrs["git_oid"] = git_oid(data)
            add_commit(state, "main", {".gitattributes": attrs}, "initial commit", None)
            save_repo(self.hub.root, state)
        self.send_json({"url": f"{self.hub.hub_url}/{repo_id}", "name": repo_id, "id": repo_id})

    def preupload(self, repo_id: str, rev: str) -> None:
        state = self.repo(repo_id, write=True)
        files = state["commits"][self.commit_of(state, rev)]["files"]
        body = json.loads(self.read_body() or b"{}")
        out = []
        for item in body.get("files", []):
            mode = "lfs" if is_lfs(item["path"], int(item["size"])) else "regular"
            remote = files.get(item["path"])
            oid = None
            if remote is not None:
                oid = remote["sha256"] if mode == "lfs" else remote["git_oid"]
            out.append(
                {"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid}
            )
        self.send_json({"files": out, "commitOid": state["branches"].get(rev)})

    def lfs_batch(self, repo_id: str) -> None:
        self.repo(repo_id, write=True)
        body = json.loads(self.read_body() or b"{}")
        objects = []
        for obj in body.get("objects", []):
            if not re.fullmatch(r"[0-9a-f]{64}", str(obj.get("oid"))):
                raise HttpError(422, None, "invalid oid")
            item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if not (self.hub.root / "objects" / obj["oid"]).is_file():
                href = f"{self.hub.hub_url}/_lfs/{obj['oid']}"
                item["actions"] = {"upload": {"href": href, "header": {}},
                                   "verify": {"href": href + "/verify"}}  # fmt: skip
            objects.append(item)
        self.send_json(
            {"transfer": "basic", "objects": objects}, 200, "application/vnd.git-lfs+json"
        )

    def lfs_object(self, method: str, path: str) -> None:
        m = re.match(r"^/_lfs/([0-9a-f]{64})(/verify)?$", path)
        if not m:
            raise HttpError(404, None, "not found")
        if m[2]:
            self.read_body()
            ok = (self.hub.root / "objects" / m[1]).is_file()
            return self.send_json({"ok": ok}, 200 if ok else 404)
        if method != "PUT":
            raise HttpError(405, None, "method not allowed")
        data = self.read_body()
        if hashlib.sha256(data).hexdigest() != m[1]:
            raise HttpError(400, None, "sha256 mismatch for uploaded object")
        store_object(self.hub.root, data)
        self.send_bytes(200, b"", {"ETag": '"' + hashlib.md5(data).hexdigest() + '"'})

    def commit(self, repo_id: str, rev: str) -> None:
        lines = [json.loads(line) for line in self.read_body().splitlines() if line.strip()]
        with self.hub.lock:
            state = self.repo(repo_id, write=True)
            if rev not in state["branches"]:
                raise HttpError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            parent = state["branches"][rev]
            files = dict(state["commits"][parent]["files"])
            summary = _apply_commit_lines(self.hub.root, files, lines)
            sha = add_commit(state, rev, files, summary, parent)
            save_repo(self.hub.root, state)
        url = f"{self.hub.hub_url}/{repo_id}/commit/{sha}"
        self.send_json({"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": ""})

    def branch(self, repo_id: str, name: str) -> None:
        body = json.loads(self.read_body() or b"{}")
        with self.hub.lock:
            state = self.repo(repo_id, write=True)
            if name in state["branches"]:
                raise HttpError(409, None, f"Reference refs/heads/{name} already exists")
            state["branches"][name] = self.commit_of(state, body.get("startingPoint") or "main")
            save_repo(self.hub.root, state)
        self.send_json({})

    # -- test control ------------------------------------------------------------------------

    def control(self, method: str, path: str) -> None:
        if path == "/_control/faults" and method == "POST":
            faults = json.loads(self.read_body() or b"{}")
            with self.hub.lock:
                self.hub.faults = faults
            return self.send_json({"ok": True})
        if path == "/_control/stats" and method == "GET":
            with self.hub.lock:
                return self.send_json(self.hub.stats)
        if path == "/_control/stats/reset" and method == "POST":
            self.read_body()
            with self.hub.lock:
                self.hub.stats = {}
            return self.send_json({"ok": True})
        raise HttpError(404, None, "not found")


def _sibling(path: str, entry: Mapping[str, Any], blobs: bool) -> dict[str, Any]:
    if not blobs:
        return {"rfilename": path}
    out: dict[str, Any] = {"rfilename": path, "size": entry["size"], "blobId": entry["git_oid"]}
    if entry["lfs"]:
        pointer = len(lfs_pointer(entry["sha256"], entry["size"]))
        out["lfs"] = {"sha256": entry["sha256"], "size": entry["size"], "pointerSize": pointer}
    return out


def _tree_file(path: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "file",
        "oid": entry["git_oid"],
        "size": entry["size"],
        "path": path,
    }
    if entry["lfs"]:
        pointer = len(lfs_pointer(entry["sha256"], entry["size"]))
        out["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": pointer}
    return out


def _apply_commit_lines(root: Path, files: dict[str, Any], lines: list[dict[str, Any]]) -> str:
    """Apply the NDJSON operations of a commit to ``files``; returns the commit summary."""
    summary = "commit"
    for line in lines:
        key, value = line.get("key"), line.get("value", {})
        if key == "header":
            summary = value.get("summary") or summary
        elif key == "file":
            data = base64.b64decode(value["content"])
            entry = file_entry(value["path"], store_object(root, data), len(data), False)
            entry["git_oid"] = git_oid(data)
            files[value["path"]] = entry
        elif key == "lfsFile":
            obj = root / "objects" / str(value["oid"])
            if not re.fullmatch(r"[0-9a-f]{64}", str(value["oid"])) or not obj.is_file():
                raise HttpError(400, None, f"LFS object {value['oid']} was never uploaded")
            entry = file_entry(value["path"], value["oid"], obj.stat().st_size, True)
            entry["git_oid"] = git_oid(lfs_pointer(value["oid"], entry["size"]))
            files[value["path"]] = entry
        elif key == "deletedFile":
            files.pop(value["path"], None)
        elif key == "deletedFolder":
            prefix = value["path"].rstrip("/") + "/"
            for path in [p for p in files if p.startswith(prefix)]:
                del files[path]
    return summary


# ----------------------------------------------------------------------------- process entry


def _serve(handler: type[BaseHandler], hub: HubState) -> ThreadingHTTPServer:
    cls = type(handler.__name__, (handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--token", action="append", default=[])
    parser.add_argument("--faults", type=Path, help="JSON file with initial faults")
    args = parser.parse_args(argv)
    hub = HubState(args.root, frozenset(args.token))
    if args.faults:
        hub.faults = json.loads(args.faults.read_text("utf-8"))
    hub_srv, cdn_srv = _serve(HubHandler, hub), _serve(CdnHandler, hub)
    hub.hub_url = f"http://127.0.0.1:{hub_srv.server_address[1]}"
    hub.cdn_url = f"http://127.0.0.1:{cdn_srv.server_address[1]}"
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hub": hub.hub_url, "cdn": hub.cdn_url, "pid": os.getpid()}))
    os.replace(tmp, args.port_file)  # the parent polls for this file: write it atomically
    done.wait()
    hub_srv.shutdown()
    cdn_srv.shutdown()
    return 0


class HubServer:
    """Start/stop the server subprocess and talk to its control endpoints (stdlib urllib)."""

    def __init__(self, root: Path, tokens: tuple[str, ...] = ("hf_test_token",)) -> None:
        self.root = root
        self.tokens = tokens
        self.url = ""
        self.cdn_url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> HubServer:
        self.root.mkdir(parents=True, exist_ok=True)
        port_file = self.root / "server.json"
        port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "tests.helpers.hubserver", "--root", str(self.root),
               "--port-file", str(port_file)] + [f"--token={t}" for t in self.tokens]  # fmt: skip
        repo_root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(cmd, cwd=repo_root)
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("hub server did not start")
            time.sleep(0.05)
        info = json.loads(port_file.read_text())
        self.url, self.cdn_url = info["hub"], info["cdn"]
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = (
            json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        )
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def publish(self, repo_id: str, files: Mapping[str, bytes], **kw: Any) -> str:
        return publish(self.root, repo_id, files, **kw)

    def set_faults(self, faults: Mapping[str, Mapping[str, Any]]) -> None:
        self._call("POST", "/_control/faults", dict(faults))

    def clear_faults(self) -> None:
        self.set_faults({})

    def stats(self) -> dict[str, dict[str, int]]:
        stats: dict[str, dict[str, int]] = self._call("GET", "/_control/stats")
        return stats

    def reset_stats(self) -> None:
        self._call("POST", "/_control/stats/reset")

    def bytes_served(self, sha256: str) -> int:
        return int(self.stats().get(sha256, {}).get("bytes_served", 0))


if __name__ == "__main__":
    raise SystemExit(main())
