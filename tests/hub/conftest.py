"""Fixtures for hub tests: a real hub-protocol server on 127.0.0.1 and the CLI as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.hubserver import HubServer

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_test_token"
BIG = 50 * 1000 * 1000


def safetensors_blob(payload: bytes) -> bytes:
    """A valid safetensors file holding ``payload`` as one uint8 tensor."""
    n = len(payload)
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + payload


def model_files(weights: bytes | None = None, **extra: bytes) -> dict[str, bytes]:
    """A small model that `mlxk health` calls healthy: config + safetensors (+ extras)."""
    config = {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1,
              "num_attention_heads": 1, "vocab_size": 16}  # fmt: skip
    files = {
        "config.json": json.dumps(config).encode(),
        "tokenizer_config.json": b'{"model_max_length": 128}',
        "model.safetensors": weights if weights is not None else safetensors_blob(b"\x01" * 4096),
    }
    return files | extra


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def big_weights() -> bytes:
    """A 50 MB safetensors file of random bytes, made once per session."""
    return safetensors_blob(os.urandom(BIG))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(tmp_path / "server", tokens=(TOKEN,)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_env(tmp_path: Path, hub: HubServer) -> dict[str, str]:
    """Environment for a CLI subprocess: own HF_HOME and workspace home, HF_ENDPOINT → server."""
    hf_home = tmp_path / "hf"
    (hf_home / "hub").mkdir(parents=True)
    ws = tmp_path / "ws"
    ws.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_", "HUGGINGFACE"))}
    return env | {
        "HF_HOME": str(hf_home), "MLXK_WORKSPACE_HOME": str(ws), "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        # hf_xet would upload through Xet storage, which the test server does not speak
        "HF_HUB_DISABLE_XET": "1",
    }  # fmt: skip


def cli_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "mlxk", *args]


def run_mlxk(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_cmd(args), env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=kw.pop("timeout", 300), **kw,
    )  # fmt: skip


def envelope(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return json.loads(res.stdout)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise AssertionError(
            f"no JSON envelope: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
        ) from exc


def repo_dir(env: dict[str, str], repo_id: str) -> Path:
    return Path(env["HF_HOME"]) / "hub" / ("models--" + repo_id.replace("/", "--"))


def wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def healthy_names(env: dict[str, str]) -> list[str]:
    res = run_mlxk(["health", "--json"], env)
    return [m["name"] for m in envelope(res)["data"]["healthy"]]
