"""Content hash v2, computed step by step from mlx-knife's published rules (inventory §2.4)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from mlxk.store.workspace import HashAbort, clean_state, compute_content_hash


def _safetensors(path: Path, header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return raw


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_hash_follows_the_v2_rules(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    header = _safetensors(
        root / "model.safetensors",
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8,
    )  # fmt: skip
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "sub" / "b.txt").write_bytes(b"bee")
    os.symlink("../config.json", root / "sub" / "link.json")
    # excluded: sentinel, *.lock, __pycache__/, .git/
    (root / ".mlxk_workspace.json").write_text("{}")
    (root / "x.lock").write_text("")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "m.pyc").write_bytes(b"zz")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")

    entries = {
        "config.json": _sha(b'{"model_type": "llama"}'),
        "model.safetensors": _sha(header),  # header bytes only
        "sub/b.txt": _sha(b"bee"),
        "sub/link.json": _sha(b"SYMLINK\x00config.json"),  # target relative to the root
    }
    agg = hashlib.sha256()
    for path in sorted(entries):
        agg.update(path.encode() + b"\x00" + entries[path].encode())
    got, index = compute_content_hash(root)
    assert got == "sha256:" + agg.hexdigest()
    assert {e.path: e.sha for e in index} == entries
    link = next(e for e in index if e.path == "sub/link.json")
    assert (link.size, link.mtime_ns) == (0, 0)


def test_symlink_leaving_the_root_aborts(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (tmp_path / "outside").write_text("x")
    os.symlink("../outside", root / "evil")
    with pytest.raises(HashAbort):
        compute_content_hash(root)


def test_clean_state_detects_edits_and_ignores_touches(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "config.json").write_text("{}")
    h, index = compute_content_hash(root)
    sentinel = {"hash_algorithm": "v2", "content_hash": h, "file_index": [e.__dict__ for e in index]}
    assert clean_state(root, sentinel) is True
    os.utime(root / "config.json", ns=(1, 1))  # mtime drift, same content: still clean
    assert clean_state(root, sentinel) is True
    (root / "config.json").write_text("{ }")
    assert clean_state(root, sentinel) is False
    assert clean_state(root, {"hash_algorithm": "v1"}) is None
    bad = dict(sentinel, file_index=[{"path": "../etc/passwd", "size": 1, "mtime_ns": 1, "sha": "x"}])
    assert clean_state(root, bad) is None
