"""The one resolver: inventory §2.2's cases plus ambiguity, @rev and suggestions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.helpers.hfcache import make_cache_repo, make_workspace, small_llama_files

from mlxk.config import Settings
from mlxk.errors import AmbiguousMatchError, HashNotFoundError, ModelNotFoundError
from mlxk.store.resolve import Resolver

C1 = "1" * 40
C2 = "2" * 40


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Resolver, Path]:
    tmp_path = tmp_path_factory.mktemp("resolve")
    hub = tmp_path / "hf" / "hub"
    files = small_llama_files()
    make_cache_repo(hub, "mlx-community/Phi-3-mini-4k-instruct-4bit", files)
    make_cache_repo(hub, "mlx-community/Qwen2.5-0.5B-Instruct-4bit", files, commit=C1)
    make_cache_repo(
        hub, "mlx-community/Qwen2.5-0.5B-Instruct-4bit", files, commit=C2, branch="v2",
    )  # fmt: skip
    make_cache_repo(hub, "mlx-community/Qwen2.5-7B-Instruct-4bit", files)
    make_cache_repo(hub, "org/exact-model", files)
    ws = tmp_path / "ws"
    make_workspace(ws / "gemma-a", small_llama_files())
    make_workspace(ws / "gemma-b", small_llama_files())
    make_workspace(ws / "solo-ws", small_llama_files())
    settings = Settings.from_env({"HF_HOME": str(tmp_path / "hf"), "MLXK_WORKSPACE_HOME": str(ws)})
    return Resolver(settings), ws


def test_exact_org_name(world: tuple[Resolver, Path]) -> None:
    res = world[0].resolve("org/exact-model")
    assert res.model.name == "org/exact-model" and res.exact


def test_bare_name_expands_to_mlx_community(world: tuple[Resolver, Path]) -> None:
    res = world[0].resolve("Phi-3-mini-4k-instruct-4bit")
    assert res.model.name == "mlx-community/Phi-3-mini-4k-instruct-4bit" and res.exact


def test_fuzzy_single_hit(world: tuple[Resolver, Path]) -> None:
    res = world[0].resolve("phi-3")
    assert res.model.name == "mlx-community/Phi-3-mini-4k-instruct-4bit"
    assert not res.exact


def test_fuzzy_ambiguity_lists_candidates(world: tuple[Resolver, Path]) -> None:
    with pytest.raises(AmbiguousMatchError) as info:
        world[0].resolve("qwen2.5")
    assert set(info.value.matches) == {
        "mlx-community/Qwen2.5-0.5B-Instruct-4bit",
        "mlx-community/Qwen2.5-7B-Instruct-4bit",
    }


def test_workspace_ambiguity_is_reported_not_first_wins(world: tuple[Resolver, Path]) -> None:
    with pytest.raises(AmbiguousMatchError) as info:
        world[0].resolve("gemma")
    assert len(info.value.matches) == 2


def test_workspace_by_name_and_fragment(world: tuple[Resolver, Path]) -> None:
    assert world[0].resolve("gemma-a").model.path == world[1] / "gemma-a"
    assert world[0].resolve("solo").model.path == world[1] / "solo-ws"


def test_explicit_path_and_prefix(world: tuple[Resolver, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(world[1])
    assert world[0].resolve("./solo-ws").model.path == (world[1] / "solo-ws").absolute()
    assert world[0].resolve(str(world[1] / "gemma-b")).model.name == str(world[1] / "gemma-b")
    with pytest.raises(AmbiguousMatchError):
        world[0].resolve("./gemma-")
    assert world[0].resolve("./gemma-a").model.display_name == "./gemma-a"


def test_rev_by_commit_prefix_and_branch(world: tuple[Resolver, Path]) -> None:
    r = world[0]
    assert r.resolve("Qwen2.5-0.5B-Instruct-4bit@1111").model.commit == C1
    assert r.resolve("Qwen2.5-0.5B-Instruct-4bit@v2").model.commit == C2
    assert r.resolve("Qwen2.5-0.5B-Instruct-4bit@main").model.commit == C1
    # refs/main wins over the newest snapshot
    assert r.resolve("Qwen2.5-0.5B-Instruct-4bit").model.commit == C1


def test_unknown_rev_lists_available(world: tuple[Resolver, Path]) -> None:
    with pytest.raises(HashNotFoundError) as info:
        world[0].resolve("Qwen2.5-0.5B-Instruct-4bit@deadbeef")
    assert sorted(info.value.extra["available_hashes"]) == ["11111111", "22222222"]


def test_unknown_name_suggests_close_matches(world: tuple[Resolver, Path]) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        world[0].resolve("Phi-3-mini-4k-instruct-8bit")
    assert "Phi-3-mini-4k-instruct-4bit" in info.value.message


def test_a_same_named_cwd_dir_is_not_taken_without_dot_slash(
    world: tuple[Resolver, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_workspace(tmp_path / "cwd" / "org-exact", small_llama_files())
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(ModelNotFoundError):
        world[0].resolve("org-exact")
    assert os.path.isdir("org-exact")
