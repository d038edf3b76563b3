"""Sentence embeddings with a small BERT encoder written in MLX.

A Hugging Face BERT layout (``config.json`` + ``model.safetensors`` + ``tokenizer.json``, the
sentence-transformers pooling config optional) is read straight into the encoder below; vectors
are pooled as the model's ``1_Pooling/config.json`` says (mean by default) and L2-normalised.
mlx-embeddings would do this too, but it is not a dependency; the encoder is ~80 lines.

mlx is imported lazily (inside functions) so ``backends.platform`` can preload a BLAS first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlxk.errors import GenerationError, ValidationError

SUPPORTED_MODEL_TYPES = ("bert",)
MAX_INPUTS = 2048  # per request: bounds the batch a client can make us build
_BATCH = 32  # sentences per forward pass


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> BertConfig:
        if cfg.get("model_type") not in SUPPORTED_MODEL_TYPES:
            raise GenerationError(
                f"embedding model_type '{cfg.get('model_type')}' is not supported "
                f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        if cfg.get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_python"):
            raise GenerationError(f"activation '{cfg.get('hidden_act')}' is not supported")
        return cls(
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=int(cfg["hidden_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=int(cfg["num_attention_heads"]),
            intermediate_size=int(cfg["intermediate_size"]),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
            type_vocab_size=int(cfg.get("type_vocab_size", 2)),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        )


def _build_encoder(cfg: BertConfig) -> Any:
    """The BERT module tree, named like Hugging Face's so its weights load by name."""
    import mlx.core as mx
    import mlx.nn as nn

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
            self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
            self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
            self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

        def __call__(self, ids: Any) -> Any:
            pos = mx.arange(ids.shape[1])[None, :]
            x = self.word_embeddings(ids) + self.position_embeddings(pos)
            x = x + self.token_type_embeddings(mx.zeros_like(ids))
            return self.LayerNorm(x)

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            h = cfg.hidden_size
            self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
            self.attn_out = nn.Linear(h, h)
            self.attn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
            self.intermediate = nn.Linear(h, cfg.intermediate_size)
            self.output = nn.Linear(cfg.intermediate_size, h)
            self.out_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)

        def __call__(self, x: Any, mask: Any) -> Any:
            b, t, h = x.shape
            nh = cfg.num_attention_heads

            def heads(y: Any) -> Any:
                return y.reshape(b, t, nh, h // nh).transpose(0, 2, 1, 3)

            q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
            a = mx.fast.scaled_dot_product_attention(q, k, v, scale=(h // nh) ** -0.5, mask=mask)
            a = a.transpose(0, 2, 1, 3).reshape(b, t, h)
            x = self.attn_norm(x + self.attn_out(a))
            # BERT's GELU is the exact (erf) one, not the tanh approximation.
            return self.out_norm(x + self.output(nn.gelu(self.intermediate(x))))

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.layers = [Layer() for _ in range(cfg.num_hidden_layers)]

        def __call__(self, ids: Any, attention: Any) -> Any:
            # additive mask: padded keys get -inf-ish scores, shape (B, 1, 1, T)
            mask = ((1.0 - attention.astype(mx.float32)) * -1e9)[:, None, None, :]
            x = self.embeddings(ids)
            for layer in self.layers:
                x = layer(x, mask)
            return x

    return Encoder()


_RENAMES = (
    ("encoder.layer.", "layers."),
    ("attention.self.query", "query"),
    ("attention.self.key", "key"),
    ("attention.self.value", "value"),
    ("attention.output.dense", "attn_out"),
    ("attention.output.LayerNorm", "attn_norm"),
    ("intermediate.dense", "intermediate"),
    ("output.dense", "output"),
    ("output.LayerNorm", "out_norm"),
)


def _rename(name: str) -> str | None:
    """A Hugging Face BERT weight name as our module path; None for weights we do not use."""
    name = name.removeprefix("bert.")
    if name.startswith(("pooler.", "cls.")) or name.endswith("position_ids"):
        return None
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


def _pooling(path: Path) -> str:
    cfg_path = path / "1_Pooling" / "config.json"
    if not cfg_path.is_file():
        return "mean"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_max_tokens"):
        return "max"
    return "mean"


@dataclass
class EmbeddingRunner:
    """A loaded encoder; ``embed`` returns one L2-normalised vector per input text."""

    model: Any
    tokenizer: Any  # tokenizers.Tokenizer
    max_length: int
    pooling: str
    dimensions: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with [CLS]/[SEP], truncated to the model's window."""
        if not texts:
            raise ValidationError("input must not be empty")
        if len(texts) > MAX_INPUTS:
            raise ValidationError(f"at most {MAX_INPUTS} inputs per request, got {len(texts)}")
        return [e.ids[: self.max_length] for e in self.tokenizer.encode_batch(list(texts))]

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """(N, D) float32, each row unit length."""
        rows = [self._embed_batch(batch[i : i + _BATCH]) for i in range(0, len(batch), _BATCH)]
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, self.dimensions), "f4")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_ids(self.tokenize(texts))

    def _embed_batch(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        import mlx.core as mx

        width = max(len(row) for row in ids)
        padded = np.zeros((len(ids), width), dtype=np.int32)
        attention = np.zeros((len(ids), width), dtype=np.int32)
        for i, row in enumerate(ids):
            padded[i, : len(row)] = row
            attention[i, : len(row)] = 1
        with self._lock:  # one forward at a time per model: MLX graphs are not re-entrant here
            att = mx.array(attention)
            hidden = self.model(mx.array(padded), att)
            pooled = _pool(hidden, att, self.pooling)
            pooled = pooled / mx.maximum(mx.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
            return np.array(pooled.astype(mx.float32))


def _pool(hidden: Any, attention: Any, mode: str) -> Any:
    import mlx.core as mx

    if mode == "cls":
        return hidden[:, 0, :]
    weights = attention[:, :, None].astype(hidden.dtype)
    if mode == "max":
        return mx.max(hidden * weights - (1 - weights) * 1e9, axis=1)
    return (hidden * weights).sum(axis=1) / mx.maximum(weights.sum(axis=1), 1.0)


def _tokenizer(path: Path, max_length: int) -> Any:
    from tokenizers import Tokenizer

    file = path / "tokenizer.json"
    if not file.is_file():
        raise GenerationError("embedding model has no tokenizer.json")
    tok = Tokenizer.from_file(str(file))
    tok.no_padding()  # we pad ourselves, per batch, to the longest row
    tok.enable_truncation(max_length)
    return tok


def load_embeddings(path: Path) -> EmbeddingRunner:
    """Load a BERT-style sentence-embedding model directory (float32 on every device)."""
    import mlx.core as mx

    try:
        cfg_dict = json.loads((path / "config.json").read_text(encoding="utf-8"))
        cfg = BertConfig.from_dict(cfg_dict)
        shards = sorted(path.glob("*.safetensors"))
        if not shards:
            raise GenerationError("embedding model has no .safetensors weights")
        weights: dict[str, Any] = {}
        for shard in shards:
            loaded = mx.load(str(shard))
            if not isinstance(loaded, dict):
                raise GenerationError(f"{shard.name} holds no named tensors")
            weights.update(loaded)
    except (OSError, ValueError, KeyError) as exc:
        raise GenerationError(f"cannot load embedding model: {exc}") from exc
    model = _build_encoder(cfg)
    renamed = [(n, w.astype(mx.float32)) for k, w in weights.items() if (n := _rename(k))]
    try:
        model.load_weights(renamed, strict=True)
    except ValueError as exc:
        raise GenerationError(f"embedding weights do not match a BERT encoder: {exc}") from exc
    mx.eval(model.parameters())
    max_length = min(cfg.max_position_embeddings, 512)
    return EmbeddingRunner(
        model, _tokenizer(path, max_length), max_length, _pooling(path), cfg.hidden_size
    )
