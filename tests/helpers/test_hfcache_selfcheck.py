"""Self-check: the fixture caches are what huggingface_hub and transformers expect."""

from __future__ import annotations

import importlib.util
import json
import struct
import time
import zipfile
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir, snapshot_download
from tests.helpers.hfcache import (
    ZooEntry,
    build_broken,
    build_healthy_sharded,
    build_many,
    build_zoo,
    make_cache_repo,
    make_workspace,
    repo_folder_name,
)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ZooEntry]]:
    hub = tmp_path_factory.mktemp("hf") / "hub"
    return hub, build_zoo(hub)


def _snapshot(hub: Path, repo_id: str) -> Path:
    commit = (hub / repo_folder_name(repo_id) / "refs" / "main").read_text()
    return hub / repo_folder_name(repo_id) / "snapshots" / commit


def test_scan_cache_dir_sees_every_repo(zoo: tuple[Path, list[ZooEntry]]) -> None:
    hub, entries = zoo
    info = scan_cache_dir(hub)
    assert info.warnings == []
    assert {repo.repo_id for repo in info.repos} == {e.repo_id for e in entries}
    for repo in info.repos:
        assert len(repo.revisions) == 1
        assert [set(rev.refs) for rev in repo.revisions] == [{"main"}]
        assert repo.nb_files == len(next(iter(repo.revisions)).files)


def test_snapshot_download_finds_snapshots_offline(zoo: tuple[Path, list[ZooEntry]]) -> None:
    hub, entries = zoo
    for entry in entries:
        found = snapshot_download(entry.repo_id, cache_dir=hub, local_files_only=True)
        assert Path(found) == _snapshot(hub, entry.repo_id)


def test_symlinks_are_relative_into_blobs(zoo: tuple[Path, list[ZooEntry]]) -> None:
    hub, entries = zoo
    for entry in entries:
        for link in _snapshot(hub, entry.repo_id).rglob("*"):
            if link.is_symlink():
                target = link.readlink()
                assert not target.is_absolute()
                assert link.resolve().parent.name == "blobs"


def test_configs_round_trip_through_autoconfig(zoo: tuple[Path, list[ZooEntry]]) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    hub, entries = zoo
    checked = 0
    for entry in entries:
        config_path = _snapshot(hub, entry.repo_id) / "config.json"
        if not config_path.exists():
            continue
        model_type = json.loads(config_path.read_text())["model_type"]
        if model_type not in CONFIG_MAPPING:
            continue
        config = AutoConfig.from_pretrained(config_path.parent)
        assert config.model_type == model_type
        checked += 1
    assert checked == len(entries) - 1  # all but the GGUF repo


def _framework_by_rule(repo_id: str, snapshot: Path) -> str:
    """The framework rule the expectations were written against."""
    readme = snapshot / "README.md"
    front = readme.read_text().split("---")[1] if readme.exists() else ""
    config = snapshot / "config.json"
    quantized = config.exists() and "quantization" in json.loads(config.read_text())
    names = [p.name for p in snapshot.rglob("*")]
    if repo_id.startswith("mlx-community/") or "library_name: mlx" in front or quantized:
        return "MLX"
    if "- mlx\n" in front:
        return "MLX"
    if any(n.endswith(".gguf") for n in names):
        return "GGUF"
    if any(n.endswith(".safetensors") or n.startswith("pytorch_model") for n in names):
        return "PyTorch"
    return "Unknown"


def test_expected_frameworks_follow_the_rule(zoo: tuple[Path, list[ZooEntry]]) -> None:
    hub, entries = zoo
    for entry in entries:
        assert _framework_by_rule(entry.repo_id, _snapshot(hub, entry.repo_id)) == entry.framework


def test_weight_files_are_valid(zoo: tuple[Path, list[ZooEntry]]) -> None:
    import gguf
    from safetensors import safe_open

    hub, _ = zoo
    for path in hub.glob("*/snapshots/*/*.safetensors"):
        with safe_open(str(path), "numpy") as handle:
            assert list(handle.keys())
    gguf_file = next(hub.glob("models--TheBloke--*/snapshots/*/*.gguf"))
    reader = gguf.GGUFReader(gguf_file)
    assert "general.architecture" in reader.fields
    bin_file = _snapshot(hub, "openai/whisper-tiny") / "pytorch_model.bin"
    assert bin_file.stat().st_size > 200
    assert "archive/data.pkl" in zipfile.ZipFile(bin_file).namelist()


def test_qwen3_omni_backend_matches_installed_libraries() -> None:
    vlm = importlib.util.find_spec("mlx_vlm")
    audio = importlib.util.find_spec("mlx_audio")
    if vlm is None or audio is None:
        pytest.skip("mlx-vlm / mlx-audio not installed")
    vlm_models = Path(next(iter(vlm.submodule_search_locations or []))) / "models"
    stt_models = Path(next(iter(audio.submodule_search_locations or []))) / "stt" / "models"
    assert (vlm_models / "qwen3_omni_moe").is_dir()
    assert not (stt_models / "qwen3_omni_moe").exists()


def test_second_snapshot_and_extra_branch(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    first = make_cache_repo(hub, "org/model", {"config.json": {"model_type": "llama"}})
    second_commit = "b" * 40
    second = make_cache_repo(
        hub,
        "org/model",
        {"config.json": {"model_type": "llama", "hidden_size": 8}},
        branch="v2",
        commit=second_commit,
        extra_branches={"refs/pr/1": second_commit},
    )
    (repo,) = scan_cache_dir(hub).repos
    refs = {rev.commit_hash: set(rev.refs) for rev in repo.revisions}
    assert refs == {first.name: {"main"}, second_commit: {"v2", "refs/pr/1"}}
    assert Path(snapshot_download("org/model", cache_dir=hub, local_files_only=True)) == first
    found = snapshot_download(
        "org/model", cache_dir=hub, revision=second_commit, local_files_only=True
    )
    assert Path(found) == second


def _safetensors_claim(path: Path) -> int:
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    return 8 + size + max(ends)


def test_broken_repos_carry_their_defect(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    broken = dict(build_broken(hub))
    assert len(broken) == 8
    assert all(reason == reason.lower() for reason in broken.values())
    truncated = _snapshot(hub, "mlxk-test/broken-truncated-safetensors") / "model.safetensors"
    assert _safetensors_claim(truncated) > truncated.stat().st_size
    pointer = _snapshot(hub, "mlxk-test/broken-lfs-pointer") / "model.safetensors"
    assert pointer.read_text().startswith("version https://git-lfs.github.com/spec/v1\n")
    blobs = hub / repo_folder_name("mlxk-test/broken-incomplete-download") / "blobs"
    assert list(blobs.glob("*.incomplete"))
    link = _snapshot(hub, "mlxk-test/broken-symlink-outside") / "model.safetensors"
    assert not link.resolve().is_relative_to(hub.resolve())
    config = _snapshot(hub, "mlxk-test/broken-invalid-config") / "config.json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(config.read_text())


def test_healthy_sharded_index_matches_shards(tmp_path: Path) -> None:
    from safetensors import safe_open

    hub = tmp_path / "hub"
    snapshot = _snapshot(hub, build_healthy_sharded(hub))
    index = json.loads((snapshot / "model.safetensors.index.json").read_text())
    for name, shard in index["weight_map"].items():
        with safe_open(str(snapshot / shard), "numpy") as handle:
            assert name in set(handle.keys())


def test_build_many_is_fast_and_scannable(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    build_many(hub, 1)  # pays the one-off transformers import outside the timing
    start = time.perf_counter()
    build_many(hub, 500)
    assert time.perf_counter() - start < 10
    assert len(scan_cache_dir(hub).repos) == 500


def test_make_workspace_writes_plain_files(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", {"config.json": {"model_type": "llama"}, "a/b.txt": "x"})
    assert json.loads((ws / "config.json").read_text()) == {"model_type": "llama"}
    assert not (ws / "a" / "b.txt").is_symlink()
