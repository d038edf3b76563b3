"""Tiny random vision/omni models for tests, built at test time (nothing binary is committed).

Each builder writes a complete model directory that the real mlx-vlm loads: config.json, random
weights (the mlx-vlm model class instantiated with the tiny config, its parameters saved with
``mlx.core.save_safetensors``, so names and shapes are exactly what mlx-vlm expects), a fast
tokenizer made with the ``tokenizers`` library, a chat template and the processor settings.
Random weights produce garbage text: tests assert on token counts, shapes and routing only.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

# Byte-level BPE without merges: every byte is one token, so any text (including the random
# bytes a random model emits) round-trips, and the vocabulary stays tiny.
_BYTE_TOKENS = 256

QWEN2_VL_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Gemma-4 style markers (own spelling; only their roles matter to the processor).
GEMMA4_SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<start_of_audio>",
    "<end_of_audio>",
    "<audio_soft_token>",
    "<|video|>",
)

_QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_GEMMA4_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image_soft_token>"
    "{% elif part['type'] == 'audio' %}<audio_soft_token>"
    "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _byte_level_tokenizer(specials: tuple[str, ...]) -> Any:
    """A byte-level BPE tokenizer: 256 byte tokens, then ``specials`` (ids 256, 257, …)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    assert len(vocab) == _BYTE_TOKENS
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _special_id(specials: tuple[str, ...], token: str) -> int:
    return _BYTE_TOKENS + specials.index(token)


def _vocab_size(specials: tuple[str, ...]) -> int:
    # Exactly the tokenizer's size: a random model samples any row of its embedding table, and
    # mlx-vlm's streaming detokenizer fails on ids the tokenizer does not know.
    return _BYTE_TOKENS + len(specials)


def _save_random_weights(model_type: str, config: dict[str, Any], out: Path, dtype: str) -> None:
    """Instantiate mlx-vlm's own model class with ``config`` and save its random parameters.

    Saved as ``dtype`` (bfloat16 by default, like published checkpoints) so a loader's float32
    cast is observable; the seed makes every build the same model.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten

    arch = importlib.import_module(f"mlx_vlm.models.{model_type}")
    cfg = copy.deepcopy(config)
    model_config = arch.ModelConfig.from_dict(cfg)
    # Same sub-config handling as mlx_vlm.utils.load_model (text/vision/audio sections).
    for name in ("text", "vision", "audio"):
        section = cfg.get(f"{name}_config")
        if section and hasattr(arch, f"{name.title()}Config"):
            setattr(
                model_config,
                f"{name}_config",
                getattr(arch, f"{name.title()}Config").from_dict(section),
            )
    mx.random.seed(0)
    model = arch.Model(model_config)
    target = getattr(mx, dtype)
    weights = {
        k: v.astype(target) if mx.issubdtype(v.dtype, mx.floating) else v
        for k, v in tree_flatten(model.parameters())
    }
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})


# --------------------------------------------------------------------------------------------
# Qwen2-VL


def make_tiny_qwen2_vl(dir: Path, *, dtype: str = "bfloat16") -> Path:
    """A tiny random ``qwen2_vl`` model directory (about 0.2 MB of weights) in ``dir``."""
    from transformers import Qwen2VLConfig

    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = QWEN2_VL_SPECIALS
    sid = lambda t: _special_id(specials, t)  # noqa: E731
    vocab = _vocab_size(specials)
    rope_scaling = {"type": "mrope", "mrope_section": [2, 2, 4]}
    hf = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "bos_token_id": sid("<|endoftext|>"),
            "eos_token_id": sid("<|im_end|>"),
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=sid("<|image_pad|>"),
        video_token_id=sid("<|video_pad|>"),
        vision_start_token_id=sid("<|vision_start|>"),
        vision_end_token_id=sid("<|vision_end|>"),
    )
    config = hf.to_dict()
    # mlx-vlm's qwen2_vl reads the language model's settings from the top level (the layout of
    # the published Qwen2-VL checkpoints) and the mrope sections from ``rope_scaling``.
    text = {k: v for k, v in config["text_config"].items() if k not in ("model_type",)}
    config.update(text)
    config["text_config"]["rope_scaling"] = rope_scaling
    config["vision_config"]["model_type"] = "qwen2_vl"  # mlx-vlm refuses "qwen2_vl_vision"
    config.update(
        rope_scaling=rope_scaling,
        architectures=["Qwen2VLForConditionalGeneration"],
        vocab_size=vocab,
        eos_token_id=sid("<|im_end|>"),
        bos_token_id=sid("<|endoftext|>"),
        max_position_embeddings=4096,
    )
    _write_json(out / "config.json", config)
    _save_random_weights("qwen2_vl", config, out, dtype)

    _byte_level_tokenizer(specials).save(str(out / "tokenizer.json"))
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "model_max_length": 4096,
            "chat_template": _QWEN2_VL_TEMPLATE,
        },
    )
    _write_json(out / "generation_config.json", {"eos_token_id": sid("<|im_end|>")})
    # Small pixel budget: a test image becomes a handful of 14-px patches.
    _write_json(
        out / "preprocessor_config.json",
        {
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2VLProcessor",
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "min_pixels": 56 * 56,
            "max_pixels": 112 * 112,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "do_convert_rgb": True,
        },
    )
    return out


# --------------------------------------------------------------------------------------------
# Gemma-4 style omni (text + vision + audio)

GEMMA4_AUDIO_MS_PER_TOKEN = 40
GEMMA4_AUDIO_SEQ_LENGTH = 750  # 750 × 40 ms: a 30 s window, as in Gemma-3n/Gemma-4
GEMMA4_IMAGE_SOFT_TOKENS = 70


def make_tiny_gemma4_omni(dir: Path, *, dtype: str = "bfloat16") -> Path:
    """A tiny random ``gemma4`` model with vision and audio towers (about 0.4 MB) in ``dir``."""
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = GEMMA4_SPECIALS
    sid = lambda t: _special_id(specials, t)  # noqa: E731
    vocab = _vocab_size(specials)
    text_config = {
        "model_type": "gemma4_text",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "global_head_dim": 32,
        "num_kv_shared_layers": 0,
        "vocab_size": vocab,
        "vocab_size_per_layer_input": vocab,
        "hidden_size_per_layer_input": 8,
        "sliding_window": 64,
        "sliding_window_pattern": 2,
        "layer_types": ["sliding_attention", "full_attention"],
        "max_position_embeddings": 8192,
        "use_double_wide_mlp": False,
        "final_logit_softcapping": 30.0,
        "tie_word_embeddings": True,
        "pad_token_id": sid("<pad>"),
    }
    vision_config = {
        "model_type": "gemma4_vision",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "global_head_dim": 16,
        "patch_size": 16,
        "pooling_kernel_size": 3,
        "position_embedding_size": 256,
        "default_output_length": GEMMA4_IMAGE_SOFT_TOKENS,
        "layer_types": ["full_attention"],
    }
    audio_config = {
        "model_type": "gemma4_audio",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "subsampling_conv_channels": [8, 4],
        "conv_kernel_size": 5,
        "attention_chunk_size": 12,
        "attention_context_left": 13,
        "attention_context_right": 0,
        "output_proj_dims": 32,
    }
    config = {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "text_config": text_config,
        "vision_config": vision_config,
        "audio_config": audio_config,
        "vocab_size": vocab,
        "hidden_size": 64,
        "image_token_id": sid("<image_soft_token>"),
        "audio_token_id": sid("<audio_soft_token>"),
        "video_token_id": sid("<|video|>"),
        "boi_token_id": sid("<start_of_image>"),
        "eoi_token_id": sid("<end_of_image>"),
        "boa_token_id": sid("<start_of_audio>"),
        "eoa_token_id": sid("<end_of_audio>"),
        "pad_token_id": sid("<pad>"),
        "eos_token_id": [sid("<eos>"), sid("<end_of_turn>")],
        "vision_soft_tokens_per_image": GEMMA4_IMAGE_SOFT_TOKENS,
        "audio_soft_tokens_per_image": GEMMA4_AUDIO_SEQ_LENGTH,
        "audio_ms_per_token": GEMMA4_AUDIO_MS_PER_TOKEN,
        "tie_word_embeddings": True,
    }
    _write_json(out / "config.json", config)
    _save_random_weights("gemma4", config, out, dtype)

    _byte_level_tokenizer(specials).save(str(out / "tokenizer.json"))
    # mlx-vlm's Gemma4Processor finds its markers as tokenizer attributes (image_token,
    # boa_token, …); transformers turns every ``*_token`` key here into such an attribute.
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "audio_token": "<audio_soft_token>",
            "boa_token": "<start_of_audio>",
            "eoa_token": "<end_of_audio>",
            "video_token": "<|video|>",
            "model_max_length": 8192,
            "chat_template": _GEMMA4_TEMPLATE,
        },
    )
    _write_json(
        out / "generation_config.json", {"eos_token_id": [sid("<eos>"), sid("<end_of_turn>")]}
    )
    _write_json(
        out / "processor_config.json",
        {
            "processor_class": "Gemma4Processor",
            "audio_seq_length": GEMMA4_AUDIO_SEQ_LENGTH,
            "audio_ms_per_token": GEMMA4_AUDIO_MS_PER_TOKEN,
            "image_processor": {
                "image_processor_type": "Gemma4ImageProcessor",
                "patch_size": 16,
                "max_soft_tokens": GEMMA4_IMAGE_SOFT_TOKENS,
                "pooling_kernel_size": 3,
            },
            "feature_extractor": {
                "feature_extractor_type": "Gemma4AudioFeatureExtractor",
                "sampling_rate": 16000,
            },
        },
    )
    return out
