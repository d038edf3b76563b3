"""Integrity checks: is every file a model needs present, complete and inside the model?

Reads file names, sizes and safetensors headers only; never loads tensors. The first problem
found is the reason, phrased so the user knows what to do.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from mlxk.store.probe import ModelFiles
from mlxk.store.safetensors_header import SafetensorsHeaderError, read_header, tensor_entries
from mlxk.types import HealthReport, LocalModel

LFS_HEADER = b"version https://git-lfs.github.com/spec"
SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.safetensors$")
PARTIAL_SUFFIXES = (".incomplete", ".partial", ".tmp", ".download")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".npz")
HEALTHY = HealthReport(True, "Model is healthy")

Check = Callable[[LocalModel, ModelFiles], "str | None"]


def check_health(
    model: LocalModel, files: ModelFiles | None = None, *, thorough: bool = False
) -> HealthReport:
    """``thorough`` parses large tokenizer files fully (the `health` command does)."""
    if model.problem:
        return HealthReport(False, model.problem)
    if not model.path.is_dir():
        return HealthReport(False, f"Model directory missing: {model.path.name}")
    try:
        files = files or ModelFiles.read(model.path)
        files.thorough = thorough
        for check in CHECKS:
            reason = check(model, files)
            if reason:
                return HealthReport(False, reason)
    except OSError as exc:
        return HealthReport(False, f"Cannot read model files: {exc.strerror or exc}")
    return HEALTHY


def _partial_downloads(model: LocalModel, files: ModelFiles) -> str | None:
    leftovers = [n for n in files.names if n.endswith(PARTIAL_SUFFIXES)]
    if model.cached and model.repo_dir is not None:
        blobs = model.repo_dir / "blobs"
        if blobs.is_dir():
            leftovers += [p.name for p in blobs.iterdir() if p.name.endswith(PARTIAL_SUFFIXES)]
    if not leftovers:
        return None
    hint = f" Run: mlxk pull {model.name} to resume" if model.cached else ""
    return f"Incomplete download: {len(leftovers)} partial file(s) ({leftovers[0]}).{hint}"


def _symlinks(model: LocalModel, files: ModelFiles) -> str | None:
    boundary = str(model.repo_dir if model.cached and model.repo_dir else model.path)
    root = str(model.path)
    for name, st in files.stats.items():
        if st.link is None:
            continue
        # Lexical check first (cheap, and what huggingface_hub writes: ../../blobs/<sha>);
        # a link that stays inside lexically is then checked for real with realpath.
        target = os.path.normpath(os.path.join(root, os.path.dirname(name), st.link))
        inside = target.startswith(boundary + os.sep)
        if inside and os.path.islink(target):
            inside = os.path.realpath(target).startswith(os.path.realpath(boundary) + os.sep)
        if not inside:
            return f"Symlink {name} leaves the {'cache' if model.cached else 'model'} ({target})"
        if st.size < 0:
            return f"Missing file: {name} (broken symlink)"
    return None


def _config(model: LocalModel, files: ModelFiles) -> str | None:
    if _is_gguf_only(files):
        return None
    return files.config_error


def _is_gguf_only(files: ModelFiles) -> bool:
    return bool(files.with_suffix(".gguf")) and not files.with_suffix(".safetensors")


def _lfs_pointers(model: LocalModel, files: ModelFiles) -> str | None:
    for name, st in files.stats.items():
        if st.size >= 200 or st.size < 0 or name.endswith(".json"):
            continue
        try:
            with (model.path / name).open("rb") as fh:
                if fh.read(len(LFS_HEADER)) == LFS_HEADER:
                    return f"LFS pointer instead of file: {name} (the real file was never fetched)"
        except OSError:
            continue
    return None


def _weights_present(model: LocalModel, files: ModelFiles) -> str | None:
    weights = [n for n in files.names if n.endswith(WEIGHT_SUFFIXES) or ".bin.part" in n]
    weights += [n for n in files.names if n.split("/")[-1] == "model.bin"]
    if not weights:
        return "No model weights found"
    empty = [n for n in weights if files.stats[n].size == 0]
    return f"Empty weight files: {', '.join(empty[:3])}" if empty else None


def _safetensors(model: LocalModel, files: ModelFiles) -> str | None:
    shards = [n for n in files.with_suffix(".safetensors") if "/" not in n]
    headers: dict[str, list[str]] = {}
    for name in shards:
        try:
            header = read_header(model.path / name)
        except SafetensorsHeaderError as exc:
            kind = "Truncated" if "truncated" in exc.message else "Corrupt"
            return f"{kind} safetensors file {exc.message}"
        headers[name] = list(tensor_entries(header))
    if files.has("model.safetensors.index.json"):
        return _check_index(model, headers)
    return _unindexed_shards(shards)


def _check_index(model: LocalModel, headers: dict[str, list[str]]) -> str | None:
    try:
        index = json.loads((model.path / "model.safetensors.index.json").read_text("utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            return "Empty or invalid weight_map in model.safetensors.index.json"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "Invalid index file model.safetensors.index.json"
    named = sorted({str(f) for f in weight_map.values()})
    missing = [f for f in named if f not in headers]
    if missing:
        return (
            f"Index names missing shard(s): {', '.join(missing[:3])}. "
            "Fix: mlxk convert <model> <output> --repair-index (or pull again)"
        )
    present = {f: set(t) for f, t in headers.items()}
    for tensor, shard in weight_map.items():
        if tensor not in present[str(shard)]:
            return f"Tensor {tensor} not in shard {shard} named by the index (index/shard mismatch)"
    return None


def _unindexed_shards(shards: list[str]) -> str | None:
    groups: dict[str, tuple[int, set[int]]] = {}
    for name in shards:
        m = SHARD_RE.match(name)
        if m:
            total, seen = groups.get(m["stem"], (int(m["n"]), set()))
            seen.add(int(m["i"]))
            groups[m["stem"]] = (total, seen)
    for _stem, (total, seen) in groups.items():
        if len(seen) < total:
            return f"Missing shards by pattern: {len(seen)}/{total} present"
        return (
            f"Safetensors index missing for sharded model ({total} shards). "
            "Fix: mlxk convert <model> <output> --repair-index"
        )
    return None


def _gguf(model: LocalModel, files: ModelFiles) -> str | None:
    for name in files.with_suffix(".gguf"):
        with (model.path / name).open("rb") as fh:
            if fh.read(4) != b"GGUF":
                return f"Not a GGUF file: {name}"
    return None


def _tokenizer(model: LocalModel, files: ModelFiles) -> str | None:
    if files.has("tokenizer_config.json") and files.json("tokenizer_config.json") is None:
        return "tokenizer_config.json contains invalid JSON"
    if not files.has("tokenizer.json"):
        return None
    path = model.path / "tokenizer.json"
    try:
        if not files.thorough:
            _check_json_ends(path)  # a cheap check in `list`, a full parse in `health`
        else:
            with path.open("rb") as fh:
                json.load(fh)
    except (ValueError, UnicodeDecodeError):
        return "tokenizer.json contains invalid JSON"
    except OSError as exc:
        return f"tokenizer.json unreadable: {exc.strerror or exc}"
    return None


def _check_json_ends(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(64).lstrip()
        end = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, end - 64))
        tail = fh.read().rstrip()
    if not (head.startswith(b"{") and tail.endswith(b"}")):
        raise ValueError("truncated JSON")


CHECKS: list[Check] = [
    _partial_downloads, _symlinks, _config, _lfs_pointers, _weights_present, _safetensors,
    _gguf, _tokenizer,
]  # fmt: skip

__all__ = ["HEALTHY", "check_health"]
