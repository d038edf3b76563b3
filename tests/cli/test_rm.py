"""`mlxk rm`: whole models, single snapshots, fuzzy confirmation and locks."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.helpers.hfcache import make_cache_repo, small_llama_files

C1, C2 = "a" * 40, "b" * 40
REPO = "mlx-community/Tiny-Llama-Instruct-4bit"


def _hub(env: dict[str, str]) -> Path:
    return Path(env["HF_HOME"]) / "hub"


def _two_snapshots(env: dict[str, str]) -> Path:
    files = small_llama_files()
    make_cache_repo(_hub(env), REPO, files, commit=C1)
    changed = dict(files) | {"README.md": "a different readme for the second revision\n"}
    make_cache_repo(_hub(env), REPO, changed, commit=C2, branch="dev")
    return _hub(env) / "models--mlx-community--Tiny-Llama-Instruct-4bit"


def test_rm_at_rev_removes_only_that_snapshot_and_its_own_blobs(env: dict[str, str]) -> None:
    repo = _two_snapshots(env)
    blobs_before = {p.name for p in (repo / "blobs").iterdir()}
    res = run_cli(["rm", f"{REPO}@dev", "--json"], env)
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)["data"]
    assert data["action"] == "deleted_revision" and data["revision"] == C2
    assert (repo / "snapshots" / C1).is_dir() and not (repo / "snapshots" / C2).exists()
    blobs_after = {p.name for p in (repo / "blobs").iterdir()}
    assert len(blobs_before - blobs_after) == 1  # only the README blob the dev revision used
    assert not (repo / "refs" / "dev").exists()
    # the remaining snapshot is intact and healthy
    health = json.loads(run_cli(["health", REPO, "--json"], env).stdout)["data"]
    assert health["summary"]["healthy_count"] == 1


def test_rm_exact_name_deletes_the_model(env: dict[str, str]) -> None:
    repo = _two_snapshots(env)
    res = run_cli(["rm", REPO], env)
    assert res.returncode == 0, res.stderr
    assert "deleted" in res.stdout and not repo.exists()


def test_fuzzy_match_without_tty_is_refused_and_keeps_everything(env: dict[str, str]) -> None:
    repo = _two_snapshots(env)
    res = run_cli(["rm", "tiny-llama", "--json"], env, stdin=None)
    assert res.returncode == 1
    err = json.loads(res.stdout)["error"]
    assert err["type"] == "requires_confirmation" and REPO in err["message"]
    assert repo.is_dir()
    assert run_cli(["rm", "tiny-llama", "-f"], env).returncode == 0
    assert not repo.exists()


def test_held_locks_block_deletion_stale_ones_do_not(env: dict[str, str]) -> None:
    from filelock import FileLock

    repo = _two_snapshots(env)
    lock = _hub(env) / ".locks" / repo.name / "x.lock"
    lock.parent.mkdir(parents=True)
    with FileLock(str(lock)):  # what huggingface_hub holds while downloading
        res = run_cli(["rm", REPO], env)
        assert res.returncode == 1 and "lock" in res.stderr.lower()
        assert repo.is_dir()
    assert lock.exists()  # filelock leaves the file behind, as huggingface_hub does
    res = run_cli(["rm", REPO, "--json"], env)
    assert res.returncode == 0, res.stdout
    assert not repo.exists() and json.loads(res.stdout)["data"]["lock_files_cleaned"] == 1


def test_rm_unknown_and_workspace(env: dict[str, str]) -> None:
    res = run_cli(["rm", "no-such-model"], env)
    assert res.returncode == 1 and "No model found" in res.stderr
    ws = Path(env["MLXK_WORKSPACE_HOME"]) / "my-ws"
    ws.mkdir()
    (ws / "config.json").write_text('{"model_type": "llama"}')
    res = run_cli(["rm", "my-ws"], env)
    assert res.returncode == 1 and "workspace" in res.stderr and ws.is_dir()
