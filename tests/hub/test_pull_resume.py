"""Interrupted pulls resume: SIGKILL at ~50 %, a cut connection, a full disk."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
from tests.helpers.hubserver import HubServer
from tests.hub.conftest import (
    REPO_ROOT,
    cli_cmd,
    envelope,
    file_size,
    healthy_names,
    model_files,
    repo_dir,
    run_mlxk,
    safetensors_blob,
    sha256,
    wait_for,
)

REPO = "org/big-model"


def _snapshot_file(env: dict[str, str], repo: str, commit: str, name: str) -> Path:
    return repo_dir(env, repo) / "snapshots" / commit / name


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_sigkill_at_half_then_resume_transfers_the_rest_only(
    hub: HubServer, hub_env: dict[str, str], big_weights: bytes
) -> None:
    weights_sha = sha256(big_weights)
    commit = hub.publish(REPO, model_files(big_weights))
    hub.set_faults({weights_sha: {"throttle": 25_000_000}})  # 50 MB in ~2 s
    partial = repo_dir(hub_env, REPO) / "blobs" / f"{weights_sha}.incomplete"
    proc = subprocess.Popen(cli_cmd(["pull", REPO, "--json"]), env=hub_env, cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        reached = wait_for(lambda: file_size(partial) >= len(big_weights) // 2, timeout=120)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert reached and proc.returncode == -signal.SIGKILL
    kept = file_size(partial)
    assert 0.45 * len(big_weights) < kept < len(big_weights)
    # never listed healthy while incomplete: no snapshot, no ref
    assert not (repo_dir(hub_env, REPO) / "snapshots" / commit).exists()
    assert REPO not in healthy_names(hub_env)

    hub.clear_faults()
    hub.reset_stats()
    res = run_mlxk(["pull", REPO, "--json"], hub_env)
    data = envelope(res)["data"]
    assert res.returncode == 0, res.stdout + res.stderr
    served = hub.bytes_served(weights_sha)
    print(f"\nresume: kept {kept} B, served {served} B of {len(big_weights)} B "
          f"({served / len(big_weights):.1%})")  # fmt: skip
    assert served < 0.6 * len(big_weights)
    assert served == len(big_weights) - kept  # exactly the missing tail, via Range
    assert data["bytes_resumed"] == kept and data["commit_hash"] == commit
    assert data["download_status"] == "success"
    final = _snapshot_file(hub_env, REPO, commit, "model.safetensors")
    assert _digest(final) == weights_sha
    assert not partial.exists()
    assert REPO in healthy_names(hub_env)


def test_cut_connection_fails_with_resume_hint_and_keeps_the_partial(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    weights = safetensors_blob(os.urandom(3_000_000))
    hub.publish(REPO, model_files(weights))
    hub.set_faults({sha256(weights): {"cut_at": 1_000_000}})  # every attempt dies at 1 MB
    res = run_mlxk(["pull", REPO, "--json"], hub_env)
    err = envelope(res)["error"]
    assert res.returncode == 1
    assert err["type"] == "network_error" and "again to resume" in err["message"]
    partial = repo_dir(hub_env, REPO) / "blobs" / f"{sha256(weights)}.incomplete"
    assert file_size(partial) == 1_000_000
    assert not (repo_dir(hub_env, REPO) / "snapshots").exists()

    hub.clear_faults()
    hub.reset_stats()
    res = run_mlxk(["pull", REPO, "--json"], hub_env)
    assert res.returncode == 0, res.stdout
    assert hub.bytes_served(sha256(weights)) == len(weights) - 1_000_000


def test_transient_cut_is_retried_within_one_pull(hub: HubServer, hub_env: dict[str, str]) -> None:
    weights = safetensors_blob(os.urandom(2_000_000))
    hub.publish(REPO, model_files(weights))
    hub.set_faults({sha256(weights): {"cut_at": 700_000, "times": 1}})
    res = run_mlxk(["pull", REPO, "--json"], hub_env)
    assert res.returncode == 0, res.stdout + res.stderr
    stats = hub.stats()[sha256(weights)]
    assert stats["gets"] == 2 and stats["bytes_served"] == len(weights)


def test_disk_full_via_rlimit_fsize_is_a_clear_error_and_resumable(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    weights = safetensors_blob(os.urandom(6_000_000))
    commit = hub.publish(REPO, model_files(weights))
    limit = 2_000_000

    def small_files() -> None:  # runs in the child: writes past `limit` fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = run_mlxk(["pull", REPO, "--json"], hub_env, preexec_fn=small_files)
    err = envelope(res)["error"]
    assert res.returncode == 1 and err["type"] == "disk_full"
    assert "Disk full" in err["message"] and "resume" in err["message"]
    assert not (repo_dir(hub_env, REPO) / "snapshots").exists()
    partial = repo_dir(hub_env, REPO) / "blobs" / f"{sha256(weights)}.incomplete"
    assert file_size(partial) == limit  # a correct prefix, kept for the next run

    hub.reset_stats()
    res = run_mlxk(["pull", REPO, "--json"], hub_env)
    assert res.returncode == 0, res.stdout
    assert hub.bytes_served(sha256(weights)) == len(weights) - limit
    assert _digest(_snapshot_file(hub_env, REPO, commit, "model.safetensors")) == sha256(weights)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> object:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)]
    if os.geteuid() != 0 or subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE test covers this")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_fills_up_during_pull_on_a_real_small_filesystem(
    hub: HubServer, hub_env: dict[str, str], small_tmpfs: Path
) -> None:
    env = hub_env | {"HF_HOME": str(small_tmpfs / "hf")}
    weights = safetensors_blob(os.urandom(8_000_000))
    hub.publish(REPO, model_files(weights))
    hub.set_faults({sha256(weights): {"throttle": 8_000_000}})
    partial = repo_dir(env, REPO) / "blobs" / f"{sha256(weights)}.incomplete"
    proc = subprocess.Popen(cli_cmd(["pull", REPO, "--json"]), env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    filler = small_tmpfs / "filler"
    try:
        assert wait_for(lambda: file_size(partial) >= 1_000_000, timeout=60)
        # someone else fills the disk meanwhile; unbuffered, so the write that finds the disk
        # full fails inside the loop, not later when close() flushes a buffer
        with filler.open("wb", buffering=0) as fh:
            try:
                for _ in range(64):
                    fh.write(b"\0" * (1 << 20))
            except OSError:
                pass
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    err = envelope(subprocess.CompletedProcess([], proc.returncode, stdout, ""))["error"]
    assert proc.returncode == 1 and err["type"] == "disk_full", err
    assert "Disk full while writing" in err["message"]  # the write failed, not the pre-check
    assert not (repo_dir(env, REPO) / "snapshots").exists()
    filler.unlink()
    hub.clear_faults()
    res = run_mlxk(["pull", REPO, "--json"], env)
    assert res.returncode == 0, res.stdout


def test_not_enough_space_is_refused_before_downloading(
    hub: HubServer, hub_env: dict[str, str], small_tmpfs: Path
) -> None:
    env = hub_env | {"HF_HOME": str(small_tmpfs / "hf")}
    weights = safetensors_blob(os.urandom(20_000_000))
    hub.publish(REPO, model_files(weights))
    res = run_mlxk(["pull", REPO, "--json"], env)
    err = envelope(res)["error"]
    assert res.returncode == 1 and err["type"] == "disk_full"
    assert "Not enough disk space" in err["message"]
    assert hub.bytes_served(sha256(weights)) == 0
    assert not (repo_dir(env, REPO) / "snapshots").exists()
