"""Shared fixtures: an isolated HF cache and workspace home for every test that asks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so tests can import tests.helpers


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
        [sys.executable, "-m", "mlxk.cli.main", *args],
        env=env, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw,  # type: ignore[arg-type]
    )  # fmt: skip
