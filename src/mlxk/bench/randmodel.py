"""Random-weight Llama models built in memory with mlx-lm's own model class, for decode
speed where no real checkpoint is at hand (gpu-roofline: speed does not depend on values).

Shapes follow Llama 3.2 1B and Llama 3.1 8B; "tiny" exists for smoke tests. The tokenizer is a
word-level one with one token per id ("<123>"), so every id decodes to text and prompts of an
exact length are easy to write.
"""

from __future__ import annotations

from typing import Any, cast

LLAMA_SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
             "tie_word_embeddings": False},
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
           "vocab_size": 128256, "tie_word_embeddings": True},
    "8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
           "vocab_size": 128256, "tie_word_embeddings": False},
}  # fmt: skip
DTYPES = ("bf16", "4bit")
Q_GROUP, Q_BITS = 64, 4


def llama_config(size: str) -> dict[str, Any]:
    return {
        "model_type": "llama", "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "max_position_embeddings": 131072, **LLAMA_SHAPES[size],
    }  # fmt: skip


def word_tokenizer(vocab_size: int) -> Any:
    """mlx-lm TokenizerWrapper over a word-level vocabulary '<0>' … '<n-1>'."""
    from mlx_lm.tokenizer_utils import TokenizerWrapper
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"<{i}>": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<0>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return TokenizerWrapper(PreTrainedTokenizerFast(tokenizer_object=tok), eos_token_ids=[])


def random_prompt(n_tokens: int, vocab_size: int, seed: int = 0) -> str:
    import numpy as np

    ids = np.random.default_rng(seed).integers(0, vocab_size, size=n_tokens)
    return " ".join(f"<{int(i)}>" for i in ids)


def build_llama(size: str, dtype: str) -> tuple[Any, dict[str, Any]]:
    """The model (evaluated, on the default device) and its config.

    Layer by layer: cast (and quantize) one block, evaluate it, go on — so the float32
    initialisation of an 8B model never sits in memory whole.
    """
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.models.llama import Model, ModelArgs

    if size not in LLAMA_SHAPES or dtype not in DTYPES:
        raise ValueError(f"random llama: size in {list(LLAMA_SHAPES)}, dtype in {DTYPES}")
    config = llama_config(size)
    model = Model(ModelArgs.from_dict(config))
    blocks: list[Any] = [*model.model.layers, model.model.embed_tokens, model.model.norm]
    if not config["tie_word_embeddings"]:
        blocks.append(model.lm_head)
    for block in blocks:
        block.set_dtype(mx.bfloat16)
        mx.eval(block.parameters())
    if dtype == "4bit":
        _quantize(model, nn, mx)
        config["quantization"] = {"group_size": Q_GROUP, "bits": Q_BITS}
    model.eval()
    return model, config


def _quantize(model: Any, nn: Any, mx: Any) -> None:
    """4-bit like mlx-lm's convert (group 64), one transformer block at a time."""
    for layer in model.model.layers:
        nn.quantize(layer, group_size=Q_GROUP, bits=Q_BITS)
        mx.eval(layer.parameters())
    nn.quantize(model, group_size=Q_GROUP, bits=Q_BITS)  # embeddings / lm_head
    mx.eval(model.parameters())


def parameter_bytes(model: Any) -> int:
    """Bytes of all parameters as they sit in memory: what one decode step reads (tied
    embeddings counted once; KV-cache reads left out)."""
    from mlx.utils import tree_flatten

    leaves = cast("list[tuple[str, Any]]", tree_flatten(model.parameters()))
    return sum(int(v.nbytes) for _k, v in leaves)
