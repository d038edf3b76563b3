"""pull name@branch / name@commit, rm name@rev, name expansion, errors that say what to do."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.hfcache import make_cache_repo
from tests.helpers.hubserver import HubServer
from tests.hub.conftest import TOKEN, envelope, healthy_names, model_files, repo_dir, run_mlxk

REPO = "org/revs"


def _two_revisions(hub: HubServer) -> tuple[str, str]:
    main = hub.publish(REPO, model_files())
    dev_files = model_files(**{"README.md": b"# the dev branch\n"})
    dev = hub.publish(REPO, dev_files, branch="dev")
    return main, dev


def test_pull_at_branch_and_at_commit_fetch_that_revision_and_rm_removes_only_it(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    main, dev = _two_revisions(hub)
    repo = repo_dir(hub_env, REPO)
    res = run_mlxk(["pull", f"{REPO}@dev", "--json"], hub_env)
    data = envelope(res)["data"]
    assert res.returncode == 0 and data["commit_hash"] == dev and data["revision"] == "dev"
    assert (repo / "refs" / "dev").read_text() == dev
    assert (repo / "snapshots" / dev / "README.md").read_bytes() == b"# the dev branch\n"
    assert not (repo / "refs" / "main").exists()

    res = run_mlxk(["pull", f"{REPO}@{main}", "--json"], hub_env)
    data = envelope(res)["data"]
    assert res.returncode == 0 and data["commit_hash"] == main
    assert not (repo / "snapshots" / main / "README.md").exists()
    assert not (repo / "refs" / "main").exists()  # pulled by commit: no branch ref invented

    again = envelope(run_mlxk(["pull", f"{REPO}@dev", "--json"], hub_env))["data"]
    assert again["download_status"] == "already_exists" and again["commit_hash"] == dev

    res = run_mlxk(["rm", f"{REPO}@dev", "--json"], hub_env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert envelope(res)["data"]["action"] == "deleted_revision"
    assert not (repo / "snapshots" / dev).exists() and not (repo / "refs" / "dev").exists()
    assert (repo / "snapshots" / main / "config.json").is_file()
    assert REPO in healthy_names(hub_env)


def test_pull_of_the_default_branch_writes_refs_main(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    main, _dev = _two_revisions(hub)
    data = envelope(run_mlxk(["pull", REPO, "--json"], hub_env))["data"]
    assert data["commit_hash"] == main and data["download_status"] == "success"
    assert data["model"] == REPO and data["expanded_name"] is None
    assert (repo_dir(hub_env, REPO) / "refs" / "main").read_text() == main
    human = run_mlxk(["pull", REPO], hub_env)
    assert human.returncode == 0 and human.stdout.startswith(f"pull: {REPO} — Already downloaded")


def test_bare_name_tries_mlx_community_and_then_resolves_locally(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    hub.publish("mlx-community/tiny-chat", model_files())
    data = envelope(run_mlxk(["pull", "tiny-chat", "--json"], hub_env))["data"]
    assert data["model"] == "mlx-community/tiny-chat"
    assert data["expanded_name"] == "mlx-community/tiny-chat"
    again = envelope(run_mlxk(["pull", "tiny-chat", "--json"], hub_env))["data"]
    assert again["download_status"] == "already_exists"


def test_a_fuzzy_local_match_does_not_retarget_the_pull(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    hub_dir = Path(hub_env["HF_HOME"]) / "hub"
    make_cache_repo(hub_dir, "org/phi-3-mini-4k", {"config.json": b"{}"})
    res = run_mlxk(["pull", "phi-3", "--json"], hub_env)
    err = envelope(res)["error"]
    assert res.returncode == 1 and err["type"] == "model_not_found"
    assert "'phi-3' not found" in err["message"] and "mlx-community/phi-3" in err["message"]


def test_gated_repo_says_accept_terms_and_set_token(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    hub.publish("org/gated", model_files(), gated="manual")
    res = run_mlxk(["pull", "org/gated", "--json"], hub_env)
    err = envelope(res)["error"]
    assert res.returncode == 1 and err["type"] == "access_denied"
    assert "accept the terms on the model page" in err["message"].lower()
    assert "HF_TOKEN" in err["message"]
    assert not repo_dir(hub_env, "org/gated").exists()
    human = run_mlxk(["pull", "org/gated"], hub_env)
    assert human.returncode == 1 and human.stderr.startswith("pull: Error: Access denied")
    ok = run_mlxk(["pull", "org/gated", "--json"], hub_env | {"HF_TOKEN": TOKEN})
    assert ok.returncode == 0, ok.stdout


def test_private_repo_needs_a_token(hub: HubServer, hub_env: dict[str, str]) -> None:
    hub.publish("org/secret", model_files(), private=True)
    res = run_mlxk(["pull", "org/secret", "--json"], hub_env)
    assert envelope(res)["error"]["type"] == "model_not_found"
    assert "HF_TOKEN" in envelope(res)["error"]["message"]
    assert run_mlxk(["pull", "org/secret"], hub_env | {"HF_TOKEN": TOKEN}).returncode == 0


def test_missing_repo_and_missing_revision(hub: HubServer, hub_env: dict[str, str]) -> None:
    hub.publish(REPO, model_files())
    res = run_mlxk(["pull", "org/does-not-exist", "--json"], hub_env)
    err = envelope(res)["error"]
    assert res.returncode == 1 and err["type"] == "model_not_found"
    assert "not found" in err["message"]
    res = run_mlxk(["pull", f"{REPO}@no-such-branch", "--json"], hub_env)
    err = envelope(res)["error"]
    assert err["type"] == "revision_not_found" and "no-such-branch" in err["message"]
    assert not repo_dir(hub_env, "org/does-not-exist").exists()


def test_server_down_is_a_network_error(hub_env: dict[str, str]) -> None:
    env = hub_env | {"HF_ENDPOINT": "http://127.0.0.1:9"}  # discard port: nothing listens
    res = run_mlxk(["pull", REPO, "--json"], env)
    err = envelope(res)["error"]
    assert res.returncode == 1 and err["type"] == "network_error"
    assert "run the same command again" in err["message"]


def test_offline_mode_refuses_pull(hub_env: dict[str, str]) -> None:
    res = run_mlxk(["pull", REPO, "--json"], hub_env | {"HF_HUB_OFFLINE": "1"})
    assert envelope(res)["error"]["type"] == "offline"


def test_bad_names_are_usage_level_errors(hub_env: dict[str, str]) -> None:
    for bad in ["", "a//b", "../x", "org/na me", "org/x@"]:
        res = run_mlxk(["pull", bad, "--json"], hub_env)
        assert res.returncode == 1 and envelope(res)["error"]["type"] == "ValidationError", bad


def test_unhealthy_copy_asks_for_confirmation_and_force_resume_repairs(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    files = model_files()
    commit = hub.publish(REPO, files)
    assert run_mlxk(["pull", REPO], hub_env).returncode == 0
    snap = repo_dir(hub_env, REPO) / "snapshots" / commit
    blob = (snap / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:20])  # damage the weights in the cache

    res = run_mlxk(["pull", REPO, "--json"], hub_env)
    data = envelope(res)["data"]
    assert res.returncode == 0 and data["download_status"] == "requires_confirmation"
    assert "--force-resume" in data["message"]
    human = run_mlxk(["pull", REPO], hub_env, stdin=None)
    assert human.returncode == 1 and "requires_confirmation" not in human.stdout
    assert "--force-resume" in human.stderr

    res = run_mlxk(["pull", REPO, "--force-resume", "--json"], hub_env)
    data = envelope(res)["data"]
    assert res.returncode == 0 and data["download_status"] == "success", res.stdout
    assert data["files_downloaded"] == 1 and data["files_reused"] == len(files) - 1
    assert (snap / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert REPO in healthy_names(hub_env)


def test_pull_json_fields_match_mlx_knife(hub: HubServer, hub_env: dict[str, str]) -> None:
    hub.publish(REPO, model_files())
    env = envelope(run_mlxk(["pull", REPO, "--json"], hub_env))
    assert env["status"] == "success" and env["command"] == "pull" and env["error"] is None
    for key in ("model", "download_status", "message", "expanded_name", "commit_hash",
                "bytes_downloaded", "bytes_resumed", "bytes_total"):  # fmt: skip
        assert key in env["data"], key
    assert env["data"]["message"].startswith("Downloaded to /")
    json.dumps(env)


def test_pull_at_branch_follows_the_branch_when_it_moved(
    hub: HubServer, hub_env: dict[str, str]
) -> None:
    _main, dev = _two_revisions(hub)
    assert (
        envelope(run_mlxk(["pull", f"{REPO}@dev", "--json"], hub_env))["data"]["commit_hash"] == dev
    )
    newer = hub.publish(REPO, model_files(**{"README.md": b"# dev, later\n"}), branch="dev")
    data = envelope(run_mlxk(["pull", f"{REPO}@dev", "--json"], hub_env))["data"]
    assert data["download_status"] == "success" and data["commit_hash"] == newer
    assert data["files_reused"] == 3 and data["files_downloaded"] == 1  # only the new README
    assert (repo_dir(hub_env, REPO) / "refs" / "dev").read_text() == newer


def test_present_model_needs_no_network(hub: HubServer, hub_env: dict[str, str]) -> None:
    commit = hub.publish(REPO, model_files())
    assert run_mlxk(["pull", REPO], hub_env).returncode == 0
    offline = hub_env | {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    for spec in (REPO, f"{REPO}@main", f"{REPO}@{commit[:8]}"):
        data = envelope(run_mlxk(["pull", spec, "--json"], offline))["data"]
        assert data["download_status"] == "already_exists" and data["commit_hash"] == commit
