"""`mlxk list --all --json` over caches shaped like real repos gives product.md §3's answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.helpers.hfcache import ZooEntry, build_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ZooEntry]]:
    hf_home = tmp_path_factory.mktemp("zoo")
    return hf_home, build_zoo(hf_home / "hub")


@pytest.fixture(scope="module")
def listed(zoo: tuple[Path, list[ZooEntry]]) -> dict[str, dict]:
    import os

    hf_home, _ = zoo
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    env["HF_HOME"] = str(hf_home)
    res = run_cli(["list", "--all", "--json"], env)
    assert res.returncode == 0, res.stderr
    envelope = json.loads(res.stdout)
    assert envelope["status"] == "success" and envelope["error"] is None
    return {m["name"]: m for m in envelope["data"]["models"]}


def _ids(zoo: tuple[Path, list[ZooEntry]]) -> list[str]:
    return [e.repo_id for e in zoo[1]]


def test_every_zoo_repo_is_listed(zoo: tuple[Path, list[ZooEntry]], listed: dict) -> None:
    assert sorted(listed) == sorted(_ids(zoo))


@pytest.mark.parametrize("field", ["framework", "model_type", "capabilities", "audio_backend"])
def test_probe_matches_the_product_rules(
    zoo: tuple[Path, list[ZooEntry]], listed: dict, field: str
) -> None:
    wrong = {}
    for entry in zoo[1]:
        got = listed[entry.repo_id][field]
        want = getattr(entry, field)
        if field == "capabilities":
            got, want = set(got) - {"tools"}, set(want)
        if got != want:
            wrong[entry.repo_id] = (got, want)
    assert not wrong, f"{field} (got, want): {wrong}"


def test_modelobject_carries_mlx_knife_fields(listed: dict) -> None:
    required = {
        "name", "hash", "size_bytes", "last_modified", "framework", "model_type",
        "capabilities", "health", "runtime_compatible", "reason", "cached",
    }  # fmt: skip
    for obj in listed.values():
        assert required <= obj.keys()
        assert obj["last_modified"].endswith("Z")
        assert len(obj["hash"]) == 40
