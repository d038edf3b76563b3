"""`mlxk health` names each integrity problem and calls healthy models healthy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.helpers.hfcache import build_broken, build_healthy_sharded, build_zoo


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]], str]:
    hf_home = tmp_path_factory.mktemp("health")
    broken = build_broken(hf_home / "hub")
    sharded = build_healthy_sharded(hf_home / "hub")
    build_zoo(hf_home / "hub")
    return hf_home, broken, sharded


@pytest.fixture(scope="module")
def report(cache: tuple[Path, list[tuple[str, str]], str]) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    env["HF_HOME"] = str(cache[0])
    res = run_cli(["health", "--json"], env)
    assert res.returncode == 0, res.stderr  # unhealthy models are a report, not a failure
    return json.loads(res.stdout)["data"]


def test_each_defect_is_named(cache: tuple[Path, list[tuple[str, str]], str], report: dict) -> None:
    reasons = {e["name"]: e["reason"] for e in report["unhealthy"]}
    missed = {}
    for repo_id, needle in cache[1]:
        if repo_id not in reasons or needle not in reasons[repo_id].lower():
            missed[repo_id] = (needle, reasons.get(repo_id))
    assert not missed, missed


def test_healthy_models_are_healthy(cache: tuple[Path, list[tuple[str, str]], str], report: dict) -> None:
    healthy = {e["name"] for e in report["healthy"]}
    assert cache[2] in healthy
    broken = {r for r, _ in cache[1]}
    assert not broken & healthy
    summary = report["summary"]
    assert summary["total"] == summary["healthy_count"] + summary["unhealthy_count"]
    assert summary["unhealthy_count"] == len(broken)


def test_list_health_column_marks_unhealthy(cache: tuple[Path, list[tuple[str, str]], str]) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    env["HF_HOME"] = str(cache[0])
    res = run_cli(["list", "--all", "--health"], env)
    assert res.returncode == 0
    line = next(ln for ln in res.stdout.splitlines() if cache[1][0][0].split("/")[-1] in ln)
    assert "unhealthy" in line
