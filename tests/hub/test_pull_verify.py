"""Pulls verify what they write: wrong bytes, hostile names and ETags, concurrent pulls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.helpers.hubserver import HubServer
from tests.hub.conftest import (
    REPO_ROOT,
    cli_cmd,
    envelope,
    healthy_names,
    model_files,
    repo_dir,
    run_mlxk,
    safetensors_blob,
    sha256,
)

from mlxk.config import Settings
from mlxk.errors import UnsafeRepoError
from mlxk.ops.download import check_commit, check_ref, safe_relpath
from mlxk.ops.hub.pull import pull_model

REPO = "org/tiny"


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("target", ["model.safetensors", "config.json"])
def test_wrong_bytes_fail_with_hash_error_and_leave_no_healthy_copy(
    hub: HubServer, hub_env: dict[str, str], target: str
) -> None:
    files = model_files(safetensors_blob(os.urandom(300_000)))
    hub.publish(REPO, files)
    bad = sha256(files[target])
    hub.set_faults({bad: {"corrupt": True}})  # same size, different bytes
    res = run_mlxk(["pull", REPO, "--json"], hub_env)
    err = envelope(res)["error"]
    assert res.returncode == 1 and err["type"] == "hash_mismatch", res.stdout
    assert target in err["message"]
    repo = repo_dir(hub_env, REPO)
    assert not (repo / "snapshots").exists() and not (repo / "refs").exists()
    leftovers = [p.name for p in (repo / "blobs").iterdir()]
    assert not any(name.startswith(bad) or name.endswith(".incomplete") for name in leftovers)
    listed = envelope(run_mlxk(["list", "--all", "--json"], hub_env))["data"]["models"]
    assert all(m["health"] != "healthy" for m in listed if m["name"] == REPO)
    assert REPO not in healthy_names(hub_env)
    # the server heals: the same pull now succeeds and keeps the good blobs it already had
    hub.clear_faults()
    assert run_mlxk(["pull", REPO, "--json"], hub_env).returncode == 0
    assert REPO in healthy_names(hub_env)


HOSTILE = ["../x", "/abs", "C:\\x", "\\\\host\\x", "a/../../x", "ok/\x00nul", "./x", "a//b"]


def _outside(tmp_path: Path) -> set[str]:
    """Everything beside this test's own directory (other tests' dirs are finished)."""
    return _tree(tmp_path.parent) - {str(tmp_path.relative_to(tmp_path.parent))}


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n))
def test_hostile_file_names_are_refused_and_nothing_is_written(
    hub: HubServer, tmp_path: Path, name: str
) -> None:
    hub.publish("org/evil", model_files() | {name: b"pwned"})
    hf_home = tmp_path / "hf"
    before, hf_before = _outside(tmp_path), _tree(tmp_path)
    settings = Settings.from_env({"HF_HOME": str(hf_home), "HF_ENDPOINT": hub.url})
    with pytest.raises(UnsafeRepoError):
        pull_model(settings, "org/evil")
    assert _tree(tmp_path) == hf_before  # not even the cache dir
    assert _outside(tmp_path) == before  # nothing beside this test's directory either


def test_hostile_listing_via_the_cli(
    hub: HubServer, hub_env: dict[str, str], tmp_path: Path
) -> None:
    hub.publish("org/evil", model_files() | {"../../x": b"pwned"})
    before, hf_before = _outside(tmp_path), _tree(Path(hub_env["HF_HOME"]))
    res = run_mlxk(["pull", "org/evil", "--json"], hub_env)
    err = envelope(res)["error"]
    assert res.returncode == 1 and err["type"] == "unsafe_repo", res.stdout
    assert "'../../x'" in err["message"]
    assert _tree(Path(hub_env["HF_HOME"])) == hf_before
    assert _outside(tmp_path) == before
    assert not (tmp_path / "x").exists() and not (Path(hub_env["HF_HOME"]) / "x").exists()


def test_hostile_etag_is_refused_before_writing(hub: HubServer, hub_env: dict[str, str]) -> None:
    files = model_files()
    hub.publish(REPO, files)
    hub.set_faults({sha256(files["model.safetensors"]): {"etag": "../../../../escaped"}})
    res = run_mlxk(["pull", REPO, "--json"], hub_env)
    assert res.returncode == 1 and envelope(res)["error"]["type"] == "unsafe_repo"
    assert not repo_dir(hub_env, REPO).exists()


def test_validators_refuse_traversal() -> None:
    for bad in [*HOSTILE, "", "a/./b", "x\n"]:
        with pytest.raises(UnsafeRepoError):
            safe_relpath(bad)
    assert safe_relpath("sub/dir/model.safetensors") == "sub/dir/model.safetensors"
    for bad in ["../" + "a" * 37, "A" * 40, "abc"]:
        with pytest.raises(UnsafeRepoError):
            check_commit(bad)
    for bad in ["../main", "refs/../x", "a\\b"]:
        with pytest.raises(UnsafeRepoError):
            check_ref(bad)
    assert check_ref("refs/pr/1") == "refs/pr/1"


def test_two_concurrent_processes_make_one_correct_copy(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    weights = safetensors_blob(os.urandom(6_000_000))
    commit = hub.publish(REPO, model_files(weights))
    hub.set_faults({sha256(weights): {"throttle": 6_000_000}})  # ~1 s: the pulls overlap
    procs = [
        subprocess.Popen(cli_cmd(["pull", REPO, "--json"]), env=hub_env, cwd=REPO_ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=180) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, stdout + stderr
        assert "Traceback" not in stderr
        assert json.loads(stdout)["data"]["commit_hash"] == commit
    repo = repo_dir(hub_env, REPO)
    assert [p.name for p in (repo / "snapshots").iterdir()] == [commit]
    blobs = {p.name for p in (repo / "blobs").iterdir()}
    assert sha256(weights) in blobs and not any(b.endswith(".incomplete") for b in blobs)
    assert (repo / "snapshots" / commit / "model.safetensors").read_bytes() == weights
    served = hub.bytes_served(sha256(weights))
    print(f"\nconcurrent: {served} B served for a {len(weights)} B file")
    assert served == len(weights)  # the second process waited on the lock and reused the blob
    assert not list((Path(hub_env["HF_HOME"]) / "hub" / ".locks").rglob("*.lock"))


def test_concurrent_threads_in_one_process(hub: HubServer, tmp_path: Path) -> None:
    weights = safetensors_blob(os.urandom(2_000_000))
    commit = hub.publish(REPO, model_files(weights))
    hub.set_faults({sha256(weights): {"throttle": 4_000_000}})
    settings = Settings.from_env({"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.url})
    results, errors = [], []

    def pull() -> None:
        try:
            results.append(pull_model(settings, REPO))
        except Exception as exc:  # the test reports any exception a thread hit
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 3
    assert {r.commit_hash for r in results} == {commit}
    snap = tmp_path / "hf" / "hub" / "models--org--tiny" / "snapshots" / commit
    assert (snap / "model.safetensors").read_bytes() == weights
    assert hub.bytes_served(sha256(weights)) == len(weights)


def test_cache_layout_is_what_huggingface_hub_reads(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    """huggingface_hub itself finds our snapshot offline: same blobs/snapshots/refs layout."""
    files = model_files() | {"sub/dir/notes.txt": b"hello", "empty.txt": b""}
    commit = hub.publish(REPO, files)
    assert run_mlxk(["pull", REPO, "--json"], hub_env).returncode == 0
    code = (
        "from huggingface_hub import snapshot_download, scan_cache_dir;"
        f"p = snapshot_download('{REPO}', local_files_only=True); print(p);"
        "info = scan_cache_dir(); print([ (r.repo_id, r.size_on_disk) for r in info.repos]);"
        "print(len(info.warnings))"
    )
    env = hub_env | {"HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].endswith(f"snapshots/{commit}")
    assert REPO in lines[1] and lines[2] == "0"
    assert Path(lines[0], "sub", "dir", "notes.txt").read_bytes() == b"hello"
    assert Path(lines[0], "empty.txt").read_bytes() == b""
