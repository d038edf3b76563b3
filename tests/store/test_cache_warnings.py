"""Cache entries mlxk cannot read are reported by `list` and `health`, never dropped silently."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.helpers.hfcache import make_cache_repo, small_llama_files

GOOD, MOVED, LOST = "org/good", "org/moved-ref", "org/lost-ref"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    hf_home = tmp_path_factory.mktemp("warnings")
    hub = hf_home / "hub"
    make_cache_repo(hub, GOOD, small_llama_files())
    # refs/main that cannot be read as a file (a directory): IsADirectoryError even for root
    snap = make_cache_repo(hub, MOVED, small_llama_files())
    ref = snap.parents[1] / "refs" / "main"
    ref.unlink()
    ref.mkdir()
    # refs/main naming a commit that is not in the cache, next to one that is
    snap = make_cache_repo(hub, LOST, small_llama_files())
    (snap.parents[1] / "refs" / "main").write_text("f" * 40)
    (hub / "models--org--dangling").symlink_to(hub / "nowhere")  # a broken symlink
    (hub / "models--org--a-file").write_text("not a repo")
    (hub / "datasets--org--data").mkdir()  # not a model: no warning
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    return base | {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


EXPECTED = {
    "org/dangling": "broken symlink",
    "org/a-file": "not a directory",
    MOVED: "refs/main unreadable",
    LOST: "refs/main names ffffffff, which has no snapshot",
}


def _json(args: list[str], env: dict[str, str]) -> dict:
    res = run_cli([*args, "--json"], env)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)["data"]  # type: ignore[no-any-return]


def _check(warnings: list[dict]) -> None:
    by_repo = {w["repo_id"]: w for w in warnings}
    assert set(by_repo) == set(EXPECTED), warnings
    for repo_id, needle in EXPECTED.items():
        assert needle in by_repo[repo_id]["reason"], by_repo[repo_id]
    assert by_repo["org/dangling"]["path"].endswith("models--org--dangling")


def test_list_json_has_the_warnings_and_still_lists_the_readable_models(env: dict) -> None:
    data = _json(["list"], env)
    _check(data["warnings"])
    names = {m["name"] for m in data["models"]}
    assert {GOOD, MOVED, LOST} <= names  # a bad ref falls back to the snapshot on disk
    assert "org/dangling" not in names and "org/a-file" not in names


def test_health_json_has_the_warnings(env: dict) -> None:
    data = _json(["health"], env)
    _check(data["warnings"])
    assert data["summary"]["total"] == 3


@pytest.mark.parametrize("command", ["list", "health"])
def test_human_output_warns_on_stderr(env: dict, command: str) -> None:
    res = run_cli([command, "--all"] if command == "list" else [command], env)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(lines) == len(EXPECTED), res.stderr
    assert any("models--org--dangling: broken symlink" in ln for ln in lines)
    assert "warning" not in res.stdout  # stdout stays the table / the report
    assert "good" in res.stdout


def test_a_pattern_shows_only_its_own_warnings(env: dict) -> None:
    assert [w["repo_id"] for w in _json(["list", "dangling"], env)["warnings"]] == ["org/dangling"]
    assert _json(["health", GOOD], env)["warnings"] == []


def test_an_unlistable_cache_is_a_warning_not_an_empty_list(tmp_path: Path) -> None:
    (tmp_path / "hub").write_text("a file where the cache directory belongs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    data = _json(["list"], env | {"HF_HOME": str(tmp_path)})
    assert data["models"] == [] and len(data["warnings"]) == 1
    assert data["warnings"][0]["repo_id"] is None
    assert "cannot list the cache" in data["warnings"][0]["reason"]
