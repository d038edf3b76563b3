"""/v1/models lists every runnable model; /v1/embeddings with MiniLM."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from tests.server.conftest import Server

pytestmark = pytest.mark.slow

EXPECTED = {
    "smollm2": ({"chat", "text-generation"}, "mlx-lm", 8192),
    "whisper-tiny.en": ({"audio"}, "mlx-audio", 448),
    "whisper-base": ({"audio", "audio-translate-en"}, "mlx-audio", 448),
    "minilm": ({"embeddings"}, "embeddings", 512),
    "tiny-qwen2-vl": ({"chat", "vision"}, None, None),
    "tiny-omni": ({"chat", "vision", "audio"}, None, None),
}


def test_models_list_shows_every_runnable_model(server: Server) -> None:
    client: Any = server.openai()
    models = {m.id: m for m in client.models.list()}
    assert set(EXPECTED) <= set(models)
    for name, (caps, backend, context) in EXPECTED.items():
        extra = models[name].model_extra or {}
        assert caps <= set(extra["capabilities"]), name
        assert extra["backend"], name
        if backend:
            assert extra["backend"] == backend
        if context:
            assert extra["context_length"] == context
    smol = models["smollm2"].model_extra or {}
    assert smol["loaded"] and smol["pinned"]
    assert all("/" not in m for m in models), "workspace models are named, never by path"


def _vec(item: Any) -> np.ndarray:
    return np.asarray(item.embedding, dtype=np.float32)


def test_embeddings_similarity_matches_minilm(server: Server) -> None:
    client: Any = server.openai()
    texts = ["man eating food", "man eating bread", "stock market fell"]
    r = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    food, bread, market = (_vec(d) for d in r.data)
    assert food.shape == (384,)
    assert np.linalg.norm(food) == pytest.approx(1.0, abs=1e-4)
    assert float(food @ bread) == pytest.approx(0.75, abs=0.02)
    assert abs(float(food @ market)) < 0.1
    assert r.usage.prompt_tokens == 5 + 5 + 5  # [CLS] … [SEP] around three words each


def test_embeddings_base64_and_single_string(server: Server) -> None:
    with server.client() as http:
        r = http.post(
            "/v1/embeddings",
            json={"model": "minilm", "input": "man eating food", "encoding_format": "base64"},
        )
        assert r.status_code == 200
        raw = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
        plain = http.post("/v1/embeddings", json={"model": "minilm", "input": "man eating food"})
    assert np.allclose(raw, np.asarray(plain.json()["data"][0]["embedding"]), atol=1e-6)


def test_embeddings_refused_for_generative_models_and_chat_refused_for_minilm(
    server: Server,
) -> None:
    with server.client() as http:
        r = http.post("/v1/embeddings", json={"model": "smollm2", "input": "x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "capability_mismatch"
        r = http.post(
            "/v1/chat/completions",
            json={"model": "minilm", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 400 and "embedding" in r.json()["error"]["message"]
        r = http.post("/v1/embeddings", json={"model": "minilm", "input": "x", "dimensions": 8})
        assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"
