"""clone from the hub (real commit in the sentinel, resumable temp cache) and push."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.helpers.hfcache import make_cache_repo
from tests.helpers.hubserver import HubServer, load_repo
from tests.hub.conftest import (
    TOKEN,
    envelope,
    model_files,
    repo_dir,
    run_mlxk,
    safetensors_blob,
    sha256,
)

from mlxk.config import Settings
from mlxk.errors import NetworkError
from mlxk.ops.hub.clone import clone_any, clone_from_hub
from mlxk.ops.staging import TEMP_PREFIX

REPO = "org/clonable"


def _settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


def _sentinel(path: Path) -> dict[str, object]:
    return json.loads((path / ".mlxk_workspace.json").read_text())  # type: ignore[no-any-return]


def test_clone_from_hub_records_the_real_commit_and_removes_its_temp_cache(
    hub: HubServer, hub_env: dict[str, str], tmp_path: Path
) -> None:
    hub.publish(REPO, model_files())
    dev = hub.publish(REPO, model_files(**{"README.md": b"dev\n"}), branch="dev")
    target = tmp_path / "work" / "clonable-dev"
    res = clone_from_hub(_settings(hub_env), f"{REPO}@dev", str(target))
    sentinel = _sentinel(target)
    assert sentinel["source_repo"] == REPO and sentinel["source_revision"] == dev
    assert sentinel["operation"] == "clone" and res.commit == dev and res.health.healthy
    assert (target / "README.md").read_bytes() == b"dev\n" and not (
        target / "README.md"
    ).is_symlink()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert not repo_dir(hub_env, REPO).exists()  # the user's cache is not touched


def test_interrupted_clone_resumes_from_its_temp_cache(
    hub: HubServer, hub_env: dict[str, str], tmp_path: Path
) -> None:
    weights = safetensors_blob(os.urandom(2_000_000))
    commit = hub.publish(REPO, model_files(weights))
    hub.set_faults({sha256(weights): {"cut_at": 1_200_000}})
    target = tmp_path / "work" / "c"
    with pytest.raises(NetworkError) as info:
        clone_from_hub(_settings(hub_env), REPO, str(target))
    assert "run the same clone again" in info.value.message
    temps = [p for p in target.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(temps) == 1 and not target.exists()
    hub.clear_faults()
    hub.reset_stats()
    res = clone_from_hub(_settings(hub_env), REPO, str(target))
    assert res.commit == commit and res.pull is not None and res.pull.bytes_resumed == 1_200_000
    assert hub.bytes_served(sha256(weights)) == len(weights) - 1_200_000
    assert (target / "model.safetensors").read_bytes() == weights
    assert not temps[0].exists()


def test_clone_any_prefers_the_local_cache_and_falls_back_to_the_hub(
    hub: HubServer, hub_env: dict[str, str], tmp_path: Path
) -> None:
    local_commit = "c" * 40
    make_cache_repo(Path(hub_env["HF_HOME"]) / "hub", "org/local-only", model_files(),
                    commit=local_commit)  # fmt: skip
    offline = _settings(hub_env | {"HF_HUB_OFFLINE": "1"})
    res = clone_any(offline, "org/local-only", str(tmp_path / "a"))
    assert _sentinel(res.target)["source_revision"] == local_commit
    remote = hub.publish(REPO, model_files())
    res = clone_any(_settings(hub_env), REPO, str(tmp_path / "b"))
    assert _sentinel(res.target)["source_revision"] == remote


# ----------------------------------------------------------------------------- push


def _workspace(root: Path, weights: bytes | None = None) -> Path:
    root.mkdir(parents=True)
    for name, data in model_files(weights).items():
        (root / name).write_bytes(data)
    (root / ".mlxk_workspace.json").write_text("{}")  # local bookkeeping: never pushed
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"junk")
    return root


def test_push_check_only_is_offline_and_reports_workspace_health(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    ws = _workspace(tmp_path / "ws1")
    (ws / "model.safetensors").write_bytes(b"")  # an empty weight file is an error anomaly
    env = hub_env | {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    res = run_mlxk(["push", str(ws), "org/x", "--private", "--check-only", "--json"], env)
    data = envelope(res)["data"]
    assert res.returncode == 0
    health = data["workspace_health"]
    assert health["files_count"] == 3 and health["config"]["valid_json"] is True
    assert health["weights"]["count"] == 1 and health["healthy"] is False
    assert [a["code"] for a in health["anomalies"]] == ["empty_weight_file"]
    assert data["experimental"] is True and data["message"].startswith("Check-only")


def test_push_dry_run_without_token_or_network_says_what_would_be_uploaded(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    ws = _workspace(tmp_path / "ws2")
    env = hub_env | {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    res = run_mlxk(["push", str(ws), "org/x", "--private", "--dry-run", "--json"], env)
    data = envelope(res)["data"]
    assert res.returncode == 0, res.stdout
    assert data["dry_run"] is True and data["remote_checked"] is False
    assert sorted(data["added_files"]) == [
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
    ]
    assert data["dry_run_summary"] == {"added": 3, "modified": None, "deleted": 0}
    assert "not asked (offline: HF_HUB_OFFLINE is set)" in data["message"]
    res = run_mlxk(["push", str(ws), "org/x", "--private", "--dry-run", "--json"],
                   env | {"HF_HUB_OFFLINE": "0", "HF_TOKEN": TOKEN})  # fmt: skip
    data = envelope(res)["data"]
    assert data["remote_checked"] is False and "hub unreachable" in data["message"]


def test_push_needs_private_and_a_token(hub_env: dict[str, str], tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws3")
    res = run_mlxk(["push", str(ws), "org/x", "--json"], hub_env)
    assert res.returncode == 2 and envelope(res)["error"]["type"] == "CommandError"
    res = run_mlxk(["push", str(ws), "org/x", "--private", "--json"], hub_env)
    assert res.returncode == 1 and envelope(res)["error"]["type"] == "auth_error"


def test_push_uploads_to_the_hub_and_pull_gets_the_same_bytes_back(
    hub: HubServer, hub_env: dict[str, str], tmp_path: Path
) -> None:
    weights = safetensors_blob(os.urandom(1_000_000))
    ws = _workspace(tmp_path / "ws4", weights)
    env = hub_env | {"HF_TOKEN": TOKEN}
    args = ["push", str(ws), "org/pushed", "--private", "--json"]
    res = run_mlxk(args, env)
    assert envelope(res)["error"]["type"] == "repo_not_found" and "--create" in res.stdout

    dry = envelope(run_mlxk([*args, "--dry-run"], env))["data"]
    assert dry["remote_checked"] is True and dry["would_create_repo"] is True

    res = run_mlxk([*args, "--create"], env)
    data = envelope(res)["data"]
    assert res.returncode == 0, res.stdout + res.stderr
    assert data["created_repo"] is True and data["uploaded_files_count"] == 3
    assert data["change_summary"] == {"added": 3, "modified": 0, "deleted": 0}
    state = load_repo(hub.root, "org/pushed")
    assert state is not None and state["private"] is True
    assert state["branches"]["main"] == data["commit_sha"]
    pushed = state["commits"][data["commit_sha"]]["files"]
    assert pushed["model.safetensors"]["lfs"] is True  # went through the LFS batch + PUT
    assert ".mlxk_workspace.json" not in pushed and "__pycache__/x.pyc" not in pushed

    again = envelope(run_mlxk(args, env))["data"]
    assert again["no_changes"] is True and again["commit_sha"] is None

    (ws / "config.json").write_text('{"model_type": "llama", "hidden_size": 16}')
    dry = envelope(run_mlxk([*args, "--dry-run"], env))["data"]
    assert dry["modified_files"] == ["config.json"] and dry["added_files"] == []
    data = envelope(run_mlxk(args, env))["data"]
    assert data["change_summary"] == {"added": 0, "modified": 1, "deleted": 0}

    pulled = envelope(run_mlxk(["pull", "org/pushed", "--json"], env))["data"]
    snap = Path(pulled["snapshot_path"])
    assert pulled["commit_hash"] == data["commit_sha"]
    assert (snap / "model.safetensors").read_bytes() == weights
    assert (snap / "config.json").read_bytes() == (ws / "config.json").read_bytes()


def test_push_to_a_new_branch_with_create(
    hub: HubServer, hub_env: dict[str, str], tmp_path: Path
) -> None:
    hub.publish("org/branchy", model_files())
    ws = _workspace(tmp_path / "ws5")
    (ws / "extra.txt").write_text("only on the branch\n")
    env = hub_env | {"HF_TOKEN": TOKEN}
    base = ["push", str(ws), "org/branchy", "--private", "--branch", "exp", "--json"]
    assert envelope(run_mlxk(base, env))["error"]["type"] == "repo_not_found"
    data = envelope(run_mlxk([*base, "--create"], env))["data"]
    assert data["created_repo"] is False and data["change_summary"]["added"] == 1
    state = load_repo(hub.root, "org/branchy")
    assert state is not None and "extra.txt" in state["commits"][state["branches"]["exp"]]["files"]
    assert "extra.txt" not in state["commits"][state["branches"]["main"]]["files"]
