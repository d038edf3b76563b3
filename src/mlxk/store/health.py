"""Integrity checks: is every file a model needs present, complete and inside the model?

Reads file names, sizes and safetensors headers only; never loads tensors. ``check_health``
gives the first problem found as the reason, phrased so the user knows what to do;
``analyze_workspace`` lists every anomaly of a directory about to be pushed (mlx-knife's
``workspace_health``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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


def _is_lfs_pointer(path: Path, size: int) -> bool:
    """A git-lfs pointer file (a few lines of text) where the real file should be."""
    if size >= 200 or size < 0:
        return False
    try:
        with path.open("rb") as fh:
            return fh.read(len(LFS_HEADER)) == LFS_HEADER
    except OSError:
        return False


def _lfs_pointers(model: LocalModel, files: ModelFiles) -> str | None:
    for name, st in files.stats.items():
        if not name.endswith(".json") and _is_lfs_pointer(model.path / name, st.size):
            return f"LFS pointer instead of file: {name} (the real file was never fetched)"
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


def _shard_groups(names: Iterable[str]) -> dict[str, tuple[int, set[int]]]:
    """``stem-0000i-of-0000n.safetensors`` names by stem: (n, the i present)."""
    groups: dict[str, tuple[int, set[int]]] = {}
    for name in names:
        m = SHARD_RE.match(name.rsplit("/", 1)[-1])
        if m:
            _total, seen = groups.setdefault(m["stem"], (int(m["n"]), set()))
            seen.add(int(m["i"]))
    return groups


def _unindexed_shards(shards: list[str]) -> str | None:
    for _stem, (total, seen) in _shard_groups(shards).items():
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


# -- a workspace before push: every anomaly, not just the first ------------------------------


@dataclass(frozen=True)
class Anomaly:
    severity: str  # "error" (unhealthy) or "warn"
    code: str  # mlx-knife's codes: config_missing, empty_weight_file, ...
    message: str
    path: str | None = None
    missing: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ConfigCheck:
    exists: bool
    valid_json: bool
    path: str | None


@dataclass(frozen=True)
class IndexCheck:
    has_index: bool
    missing: tuple[str, ...] = ()  # shards the index names that are absent, empty or pointers
    parse_error: bool = False


@dataclass(frozen=True)
class WeightsCheck:
    count: int
    formats: tuple[str, ...]
    index: IndexCheck
    pattern_complete: bool | None  # None: no ``-0000i-of-0000n`` shards at all


@dataclass(frozen=True)
class WorkspaceHealth:
    files_count: int
    total_bytes: int
    config: ConfigCheck
    weights: WeightsCheck
    anomalies: tuple[Anomaly, ...]

    @property
    def healthy(self) -> bool:
        return not any(a.severity == "error" for a in self.anomalies)


def analyze_workspace(root: Path, files: Mapping[str, int]) -> WorkspaceHealth:
    """``push --check-only``: offline, reads only the files (relative path → size) to push."""
    config = _config_check(root)
    weights = {p: n for p, n in files.items() if p.endswith(WEIGHT_SUFFIXES)}
    index = _index_check(root, set(files))
    anomalies = [*_config_anomalies(config), *_weight_anomalies(root, weights)]
    anomalies += _index_anomalies(index) + _partial_markers(files)
    formats = tuple(sorted({p.rsplit(".", 1)[-1] for p in weights}))
    groups = _shard_groups(weights)
    complete = all(len(got) == n for n, got in groups.values()) if groups else None
    return WorkspaceHealth(
        len(files), sum(files.values()), config,
        WeightsCheck(len(weights), formats, index, complete), tuple(anomalies),
    )  # fmt: skip


def _config_check(root: Path) -> ConfigCheck:
    path = root / "config.json"
    if not path.is_file():
        return ConfigCheck(False, False, None)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        valid = isinstance(data, dict) and bool(data)
    except (OSError, ValueError):
        valid = False
    return ConfigCheck(True, valid, str(path))


def _config_anomalies(config: ConfigCheck) -> list[Anomaly]:
    if not config.exists:
        return [Anomaly("error", "config_missing", "config.json not found")]
    if not config.valid_json:
        return [Anomaly("error", "config_invalid_json", "config.json invalid or empty")]
    return []


def _weight_anomalies(root: Path, weights: Mapping[str, int]) -> list[Anomaly]:
    if not weights:
        return [Anomaly("error", "no_weights_found",
                        "No weights (*.safetensors/*.gguf/*.bin/*.npz)")]  # fmt: skip
    out = []
    for path, size in weights.items():
        if size == 0:
            out.append(Anomaly("error", "empty_weight_file", f"Empty file: {path}", path))
        elif _is_lfs_pointer(root / path, size):
            out.append(Anomaly("error", "lfs_pointer_detected", f"LFS pointer: {path}", path))
    return out


def _index_check(root: Path, present: set[str]) -> IndexCheck:
    index = root / "model.safetensors.index.json"
    if not index.is_file():
        return IndexCheck(False)
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        named = sorted({str(v) for v in weight_map.values()})
    except (OSError, ValueError, AttributeError):
        return IndexCheck(True, parse_error=True)
    missing = []
    for name in named:
        path = root / name
        size = path.stat().st_size if name in present and path.is_file() else 0
        if size == 0 or _is_lfs_pointer(path, size):
            missing.append(name)
    return IndexCheck(True, tuple(missing))


def _index_anomalies(index: IndexCheck) -> list[Anomaly]:
    out = []
    if index.parse_error:
        out.append(
            Anomaly("error", "index_parse_error", "model.safetensors.index.json parse error")
        )
    if index.missing:
        out.append(Anomaly("error", "index_missing_shard",
                           f"Missing/invalid shards: {len(index.missing)}",
                           missing=index.missing))  # fmt: skip
    return out


def _partial_markers(files: Mapping[str, int]) -> list[Anomaly]:
    out = []
    for path in files:
        low = path.rsplit("/", 1)[-1].lower()
        if "partial" in low or low.endswith((".tmp", ".incomplete")):
            out.append(Anomaly("warn", "partial_marker", f"Partial/tmp marker: {low}", path))
    return out
