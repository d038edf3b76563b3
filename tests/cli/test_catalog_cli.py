"""list / show / --version / usage errors as a user sees them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import run_cli
from tests.helpers.hfcache import make_cache_repo, small_llama_files

REPO = "mlx-community/Tiny-Llama-3.2-Instruct-4bit"


def _cache(env: dict[str, str]) -> Path:
    return make_cache_repo(Path(env["HF_HOME"]) / "hub", REPO, small_llama_files())


def test_json_flag_before_or_after_the_subcommand(env: dict[str, str]) -> None:
    _cache(env)
    a = json.loads(run_cli(["--json", "list"], env).stdout)
    b = json.loads(run_cli(["list", "--json"], env).stdout)
    assert a["data"]["count"] == b["data"]["count"] == 1
    assert a["command"] == b["command"] == "list" and a["status"] == "success"


def test_show_names_backend_and_details(env: dict[str, str]) -> None:
    _cache(env)
    data = json.loads(run_cli(["show", "tiny-llama", "--json"], env).stdout)["data"]
    assert data["model"]["name"] == REPO and data["backends"] == {"text": "mlx-lm"}
    assert data["model"]["quantization"] == {"bits": 4, "group_size": 64}
    assert data["metadata"]["quantization"] == "4bit" and data["metadata"]["context_length"] > 0
    files = json.loads(run_cli(["show", REPO, "--files", "--json"], env).stdout)["data"]["files"]
    kinds = {f["name"]: f["type"] for f in files}
    assert kinds["config.json"] == "config" and kinds["model.safetensors"] == "weights"
    cfg = json.loads(run_cli(["show", REPO, "--config", "--json"], env).stdout)["data"]["config"]
    assert cfg["model_type"] == "llama"
    human = run_cli(["show", REPO], env).stdout
    assert "Backend: text → mlx-lm" in human and "Capabilities: text-generation, chat" in human


def test_version(env: dict[str, str]) -> None:
    res = run_cli(["--version"], env)
    assert res.returncode == 0 and res.stdout.startswith("mlxk ")
    data = json.loads(run_cli(["--version", "--json"], env).stdout)["data"]
    assert data["json_api_spec_version"] == "0.2.3"
    assert data["system"]["device"] in ("cpu", "cuda", "metal")
    assert "blas_available" in data["system"] or "blas" in data["system"]


def test_usage_errors_exit_2_and_json_errors_are_envelopes(env: dict[str, str]) -> None:
    res = run_cli(["list", "--bogus"], env)
    assert res.returncode == 2 and "Error" in res.stderr
    res = run_cli(["--json", "frobnicate"], env)
    assert res.returncode == 2
    assert json.loads(res.stdout)["error"]["type"] == "CommandError"
    res = run_cli(["show", "nothing-like-this", "--json"], env)
    assert res.returncode == 1
    assert json.loads(res.stdout)["error"]["type"] == "model_not_found"


def test_mlx_run_script_is_mlxk_run(env: dict[str, str]) -> None:
    exe = shutil.which("mlx-run", path=str(Path(__import__("sys").executable).parent))
    assert exe, "the mlx-run console script is installed with mlxk"
    res = subprocess.run([exe, "no-such-model", "hi"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stderr.startswith("run: Error: No model found")
