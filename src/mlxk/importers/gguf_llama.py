"""Import a llama-family GGUF file (llama.cpp) as a Hugging Face style MLX model directory.

Output: config.json, model.safetensors (dequantized, HF tensor names), tokenizer.json,
tokenizer_config.json, generation_config.json; optionally re-quantized with mlx-lm afterwards.

Weights are dequantized with the ``gguf`` package (numpy), not with ``mx.load``: it covers the
K-quants and IQ types too, and keeps the import free of MLX until an optional quantize step.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlxk.errors import ConversionError, ImportFormatError, UnsupportedArchitectureError

if TYPE_CHECKING:  # the gguf package loads numpy; only import it when importing a file
    import numpy as np
    from gguf import GGUFReader, ReaderTensor

ProgressFn = Callable[[int, int], None]

GGUF_MAGIC = b"GGUF"
SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "qwen3")

# GGUF arch → (HF model_type, HF architectures entry). Mistral 7B GGUFs carry arch "llama".
_HF_MODEL: dict[str, tuple[str, str]] = {
    "llama": ("llama", "LlamaForCausalLM"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
}
# llama.cpp's converter permutes attn_q/attn_k rows (HF "half split" rope → interleaved rope)
# only for archs whose rope is the "normal" one; qwen2/qwen3 use NEOX rope and are stored as-is.
_PERMUTED_QK = frozenset({"llama"})

_LAYER_TENSORS: dict[str, str] = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_TENSORS: dict[str, str] = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_SKIPPED_TENSORS = frozenset({"rope_freqs.weight"})  # folded into config.rope_scaling instead
_LAYER_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_GLOBAL_RE = re.compile(r"^([a-z_]+)\.(weight|bias)$")
_QUANT_SUFFIX_RE = re.compile(r"[.\-_](I?Q\d[\w]*|F16|F32|BF16)$", re.IGNORECASE)

# Bits per weight of the common GGML types, for "re-quantizing to more bits" warnings.
_GGML_BITS: dict[str, int] = {
    "Q2_K": 2, "Q3_K": 3, "Q4_0": 4, "Q4_1": 4, "Q4_K": 4, "IQ4_NL": 4, "IQ4_XS": 4,
    "Q5_0": 5, "Q5_1": 5, "Q5_K": 5, "Q6_K": 6, "Q8_0": 8, "Q8_K": 8, "MXFP4": 4,
    "IQ2_XXS": 2, "IQ2_XS": 2, "IQ2_S": 2, "IQ3_XXS": 3, "IQ3_S": 3, "IQ1_S": 1, "IQ1_M": 1,
    "F16": 16, "BF16": 16, "F32": 32,
}  # fmt: skip


@dataclass(frozen=True)
class GgufImportInfo:
    architecture: str  # GGUF general.architecture
    name_guess: str  # from the file name without its quant tag, else general.name
    n_params: int
    source_sha256: str  # hex digest of the GGUF file
    source_quantization: str  # dominant GGML type of the 2-D weights, e.g. "Q4_1"
    dtype: str  # dtype of the dequantized weights written: float16 / bfloat16
    quantization: dict[str, int] | None  # {"bits", "group_size"} when --quantize was applied
    warnings: tuple[str, ...] = ()


class _Float16Overflow(Exception):
    """A dequantized tensor does not fit in float16; the import restarts as bfloat16."""


# ---------------------------------------------------------------------------------------------
# Reading and validating the file


def looks_like_gguf(path: Path) -> bool:
    """True when the file starts with the GGUF magic (a cheap test, no parsing)."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _check_preamble(src: Path) -> None:
    """Magic and version, so a garbage file gets a clear message, not a numpy error."""
    try:
        with src.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ImportFormatError(f"{src.name}: cannot read: {exc.strerror or exc}") from exc
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ImportFormatError(f"{src.name}: not a GGUF file (bad magic {head[:4]!r})")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in (2, 3):
        raise ImportFormatError(f"{src.name}: unsupported GGUF version {version} (need 2 or 3)")


def _open_reader(src: Path) -> GGUFReader:
    from gguf import GGUFReader

    _check_preamble(src)
    size = src.stat().st_size
    try:
        reader = GGUFReader(src)
    except (ValueError, IndexError, struct.error, OverflowError, MemoryError) as exc:
        why = " ".join(str(exc).split())  # numpy messages may span lines; keep one
        raise ImportFormatError(
            f"{src.name}: truncated or corrupt GGUF ({size} bytes): {why}"
        ) from exc
    for tensor in reader.tensors:  # the reader maps lazily; make sure every byte exists
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            raise ImportFormatError(
                f"{src.name}: truncated GGUF: tensor {tensor.name} ends at byte {end}, "
                f"file has {size}"
            )
    return reader


def _metadata(reader: GGUFReader) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = field.contents()
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise ImportFormatError(f"corrupt GGUF metadata field {key}: {exc}") from exc
    return meta


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _architecture(meta: dict[str, Any]) -> str:
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise ImportFormatError("GGUF has no general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"GGUF architecture '{arch}' is not supported; supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}",
            architecture=arch,
            supported=list(SUPPORTED_ARCHITECTURES),
        )
    return arch


def _f32(value: Any) -> float:
    """A float32 metadata value in its shortest form (1e-05, not 9.999999747378752e-06)."""
    import numpy as np

    return float(str(np.float32(value)))


def _required(meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise ImportFormatError(f"GGUF metadata lacks {key}")
    return meta[key]


# ---------------------------------------------------------------------------------------------
# config.json


def _rope_scaling(meta: dict[str, Any], arch: str, reader: GGUFReader) -> dict[str, Any] | None:
    kind = meta.get(f"{arch}.rope.scaling.type")
    factor = meta.get(f"{arch}.rope.scaling.factor")
    if kind == "linear" and factor:
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "yarn" and factor:
        scaling: dict[str, Any] = {"rope_type": "yarn", "factor": float(factor)}
        if orig := meta.get(f"{arch}.rope.scaling.original_context_length"):
            scaling["original_max_position_embeddings"] = int(orig)
        return scaling
    if kind not in (None, "none"):
        raise UnsupportedArchitectureError(f"unsupported GGUF rope scaling type '{kind}'")
    freqs = next((t for t in reader.tensors if t.name == "rope_freqs.weight"), None)
    if freqs is None:
        return None
    head_dim = int(freqs.n_elements) * 2
    return _llama3_scaling(freqs.data, float(meta.get(f"{arch}.rope.freq_base", 10000.0)), head_dim)


def _llama3_factors(base: float, dim: int, scaling: dict[str, Any]) -> list[float]:
    """The per-frequency divisors of Llama 3.1 rope scaling (what llama.cpp stores)."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_ctx = scaling["original_max_position_embeddings"]
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(float(factor))
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return out


def _llama3_scaling(stored: np.ndarray, base: float, head_dim: int) -> dict[str, Any]:
    # GGUF keeps only the resulting factors; Llama 3.1/3.2 all use low=1, high=4, 8192 and a
    # factor equal to the largest divisor. Accept that only when it reproduces the tensor.
    import numpy as np

    scaling = {
        "rope_type": "llama3",
        "factor": float(round(float(np.max(stored)), 4)),
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    expected = np.asarray(_llama3_factors(base, head_dim, scaling), dtype=np.float32)
    if expected.shape != stored.shape or not np.allclose(expected, stored, rtol=1e-3):
        raise UnsupportedArchitectureError("GGUF rope_freqs do not match Llama 3 rope scaling")
    return scaling


def _vocab_size(reader: GGUFReader) -> int:
    for tensor in reader.tensors:
        if tensor.name == "token_embd.weight":
            return int(tensor.shape[-1])  # GGUF shapes are (cols, rows)
    raise ImportFormatError("GGUF has no token_embd.weight tensor")


def _eos_ids(meta: dict[str, Any]) -> list[int]:
    """EOS, end-of-turn and end-of-message ids: a chat model may end with any of them."""
    ids: list[int] = []
    for key in ("eos_token_id", "eot_token_id", "eom_token_id"):
        value = meta.get(f"tokenizer.ggml.{key}")
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    return ids


def _hf_config(meta: dict[str, Any], arch: str, reader: GGUFReader, dtype: str) -> dict[str, Any]:
    model_type, hf_class = _HF_MODEL[arch]
    hidden = int(_required(meta, f"{arch}.embedding_length"))
    heads = int(_required(meta, f"{arch}.attention.head_count"))
    head_dim = int(meta.get(f"{arch}.attention.key_length", hidden // heads))
    rope_dim = meta.get(f"{arch}.rope.dimension_count")
    if rope_dim is not None and int(rope_dim) != head_dim:
        raise UnsupportedArchitectureError(f"partial rotary embeddings ({rope_dim}/{head_dim})")
    names = {t.name for t in reader.tensors}
    eos = _eos_ids(meta)
    config: dict[str, Any] = {
        "architectures": [hf_class],
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": int(_required(meta, f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(_required(meta, f"{arch}.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.get(f"{arch}.attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": _f32(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": _f32(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        "rope_scaling": _rope_scaling(meta, arch, reader),
        "max_position_embeddings": int(meta.get(f"{arch}.context_length", 4096)),
        "vocab_size": _vocab_size(reader),
        "tie_word_embeddings": "output.weight" not in names,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
        "torch_dtype": dtype,
    }
    if arch == "llama":
        config["attention_bias"] = "blk.0.attn_q.bias" in names
        config["mlp_bias"] = False
    if arch == "qwen2":
        config["use_sliding_window"] = False
    return config


# ---------------------------------------------------------------------------------------------
# Tensors


def _hf_name(gguf_name: str) -> str | None:
    """HF name of a GGUF tensor; None for one that is not part of the model's weights."""
    if gguf_name in _SKIPPED_TENSORS:
        return None
    if m := _LAYER_RE.match(gguf_name):
        layer, part, kind = m.groups()
        if part in _LAYER_TENSORS:
            return f"model.layers.{layer}.{_LAYER_TENSORS[part]}.{kind}"
    elif (m := _GLOBAL_RE.match(gguf_name)) and m.group(1) in _GLOBAL_TENSORS:
        return f"{_GLOBAL_TENSORS[m.group(1)]}.{m.group(2)}"
    raise UnsupportedArchitectureError(f"unexpected tensor '{gguf_name}' for this architecture")


def _unpermute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation: per head, rows (d/2, 2) → (2, d/2)."""
    rows = weight.shape[0]
    head_dim = rows // n_head
    out = weight.reshape(n_head, head_dim // 2, 2, *weight.shape[1:]).swapaxes(1, 2)
    return out.reshape(weight.shape)


@dataclass(frozen=True)
class _PlannedTensor:
    hf_name: str
    source: ReaderTensor
    shape: tuple[int, ...]  # HF (row-major) shape
    permute_heads: int | None  # heads to un-permute by, or None


def _plan(reader: GGUFReader, arch: str, config: dict[str, Any]) -> list[_PlannedTensor]:
    plan: list[_PlannedTensor] = []
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    for tensor in reader.tensors:
        hf_name = _hf_name(tensor.name)
        if hf_name is None:
            continue
        part = tensor.name.split(".")[2] if tensor.name.startswith("blk.") else ""
        permute = heads.get(part) if arch in _PERMUTED_QK else None
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        plan.append(_PlannedTensor(hf_name, tensor, shape, permute))
    if len({p.hf_name for p in plan}) != len(plan):
        raise ImportFormatError("GGUF holds the same tensor twice")
    return plan


def _dequantized(item: _PlannedTensor) -> np.ndarray:
    import numpy as np
    from gguf.quants import dequantize

    tensor = item.source
    try:
        values = dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as exc:
        raise UnsupportedArchitectureError(
            f"tensor {tensor.name}: GGML type {tensor.tensor_type.name} cannot be dequantized"
        ) from exc
    values = np.asarray(values, dtype=np.float32).reshape(item.shape)
    if item.permute_heads:
        values = _unpermute(values, item.permute_heads)
    return values


# ---------------------------------------------------------------------------------------------
# model.safetensors, written tensor by tensor so memory stays at one tensor


_SAFETENSORS_DTYPES = {"float16": ("F16", 2), "bfloat16": ("BF16", 2), "float32": ("F32", 4)}


def _encode(values: np.ndarray, dtype: str) -> bytes:
    import numpy as np

    if dtype == "float32":
        return values.astype("<f4").tobytes()
    if dtype == "bfloat16":
        # Round to nearest even on the upper 16 bits of the float32 pattern.
        bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return rounded.astype("<u2").tobytes()
    half = values.astype("<f2")
    if not np.isfinite(half).all() and np.isfinite(values).all():
        raise _Float16Overflow
    return half.tobytes()


def _write_safetensors(
    path: Path, plan: list[_PlannedTensor], dtype: str, progress: ProgressFn | None
) -> None:
    code, itemsize = _SAFETENSORS_DTYPES[dtype]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for item in plan:
        nbytes = math.prod(item.shape) * itemsize
        header[item.hf_name] = {"dtype": code, "shape": list(item.shape),
                                "data_offsets": [offset, offset + nbytes]}  # fmt: skip
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data must start 8-byte aligned
    done = 0
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for item in plan:
            data = _encode(_dequantized(item), dtype)
            fh.write(data)
            done += len(data)
            if progress is not None:
                progress(done, offset)


# ---------------------------------------------------------------------------------------------
# Tokenizer

# Split patterns for llama.cpp's pre-tokenizer names (tokenizer.ggml.pre).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_PRE = frozenset({"llama3", "llama-v3", "llama-bpe", "smaug-bpe", "falcon3"})
_QWEN2_PRE = frozenset({"qwen2", "deepseek-r1-qwen"})
_DIGITS_PRE = frozenset({"smollm", "starcoder", "refact", "codeshell"})  # digits split singly
_GPT2_PRE = frozenset({"default", "gpt-2", "gpt2"})
_CONTROL, _USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values


def _byte_level_pre(pre: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _LLAMA3_PRE or pre in _QWEN2_PRE:
        split = _LLAMA3_SPLIT if pre in _LLAMA3_PRE else _QWEN2_SPLIT
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])  # fmt: skip
    if pre in _DIGITS_PRE:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in _GPT2_PRE:
        return byte_level
    raise UnsupportedArchitectureError(
        f"GGUF pre-tokenizer '{pre}' is not supported; supported: "
        f"{', '.join(sorted(_LLAMA3_PRE | _QWEN2_PRE | _DIGITS_PRE | _GPT2_PRE))}"
    )


def _bpe_tokenizer(meta: dict[str, Any]) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    pre = str(meta.get("tokenizer.ggml.pre", "default"))
    vocab = {tok: i for i, tok in enumerate(tokens)}
    model = models.BPE(vocab=vocab, merges=merges, ignore_merges=pre in _LLAMA3_PRE)
    tokenizer = Tokenizer(model)
    if pre in _QWEN2_PRE:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = _byte_level_pre(pre)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _spm_merges(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary: a piece made of two pieces is a
    merge, ranked by the merged piece's score (higher merges first), as SentencePiece does."""
    vocab = {tok: i for i, tok in enumerate(tokens)}
    found: list[tuple[float, int, int, str, str]] = []
    for piece, idx in vocab.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                found.append((-scores[idx], vocab[left], vocab[right], left, right))
    found.sort()
    return [(left, right) for _, _, _, left, right in found]


def _spm_tokenizer(meta: dict[str, Any]) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    scores = [float(s) for s in meta.get("tokenizer.ggml.scores", [0.0] * len(tokens))]
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    model = models.BPE(
        vocab={tok: i for i, tok in enumerate(tokens)},
        merges=_spm_merges(tokens, scores),
        unk_token=tokens[unk] if isinstance(unk, int) else None,
        fuse_unk=True,
        byte_fallback=True,
    )
    tokenizer = Tokenizer(model)
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    # As llama.cpp: spaces become "▁" and every text run (also one after a special token)
    # gets a leading "▁", even when it already starts with a space.
    steps_in = [normalizers.Prepend("▁")] if prefix else []
    tokenizer.normalizer = normalizers.Sequence([*steps_in, normalizers.Replace(" ", "▁")])
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence([*steps, decoders.Strip(" ", 1, 0)] if prefix else steps)
    return tokenizer


def _special_ids(meta: dict[str, Any]) -> dict[str, int]:
    out = {}
    for role in ("bos", "eos", "unknown", "padding"):
        value = meta.get(f"tokenizer.ggml.{role}_token_id")
        if isinstance(value, int):
            out[role] = value
    return out


def _add_special_tokens(tokenizer: Any, meta: dict[str, Any]) -> None:
    from tokenizers import AddedToken

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    special_ids = set(_special_ids(meta).values()) | set(_eos_ids(meta))
    special, user = [], []
    for idx, (tok, kind) in enumerate(zip(tokens, types, strict=False)):
        if kind == _CONTROL or idx in special_ids:
            special.append(AddedToken(tok, special=True, normalized=False))
        elif kind == _USER_DEFINED:
            user.append(AddedToken(tok, special=False, normalized=False))
    tokenizer.add_special_tokens(special)
    tokenizer.add_tokens(user)


def _set_post_processor(tokenizer: Any, meta: dict[str, Any]) -> None:
    """BOS/EOS added on encode as the GGUF says (add_bos_token / add_eos_token)."""
    from tokenizers import processors

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    ids = _special_ids(meta)
    single, pair, used = "$A:0", "$A:0 $B:1", {}
    if meta.get("tokenizer.ggml.add_bos_token") and "bos" in ids:
        bos = tokens[ids["bos"]]
        single, pair, used[bos] = f"{bos}:0 {single}", f"{bos}:0 $A:0 {bos}:1 $B:1", ids["bos"]
    if meta.get("tokenizer.ggml.add_eos_token") and "eos" in ids:
        eos = tokens[ids["eos"]]
        single, pair, used[eos] = f"{single} {eos}:0", f"{pair} {eos}:1", ids["eos"]
    if used:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=list(used.items())
        )
    elif meta.get("tokenizer.ggml.model") == "gpt2":
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)


def _build_tokenizer(meta: dict[str, Any]) -> Any:
    kind = meta.get("tokenizer.ggml.model")
    if "tokenizer.ggml.tokens" not in meta:
        raise ImportFormatError("GGUF has no tokenizer (tokenizer.ggml.tokens missing)")
    if kind == "gpt2":
        tokenizer = _bpe_tokenizer(meta)
    elif kind == "llama":
        tokenizer = _spm_tokenizer(meta)
    else:
        raise UnsupportedArchitectureError(
            f"GGUF tokenizer model '{kind}' is not supported; supported: gpt2, llama"
        )
    _add_special_tokens(tokenizer, meta)
    _set_post_processor(tokenizer, meta)
    return tokenizer


def _tokenizer_config(meta: dict[str, Any], context_length: int) -> dict[str, Any]:
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    ids = _special_ids(meta)
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": context_length,
    }
    for role, key in (("bos", "bos_token"), ("eos", "eos_token"), ("unknown", "unk_token"),
                      ("padding", "pad_token")):  # fmt: skip
        if role in ids and ids[role] < len(tokens):
            config[key] = tokens[ids[role]]
    if template := meta.get("tokenizer.chat_template"):
        config["chat_template"] = template
    return config


# ---------------------------------------------------------------------------------------------
# Import


def _name_guess(src: Path, meta: dict[str, Any]) -> str:
    stem = src.name[: -len(".gguf")] if src.name.lower().endswith(".gguf") else src.stem
    guess = _QUANT_SUFFIX_RE.sub("", stem)
    return guess or str(meta.get("general.name") or stem)


def _source_quantization(reader: GGUFReader) -> str:
    """The GGML type holding most elements of the 2-D weights (the file's real precision)."""
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        if len(tensor.shape) >= 2:
            name = tensor.tensor_type.name
            counts[name] = counts.get(name, 0) + int(tensor.n_elements)
    return max(counts, key=lambda k: counts[k]) if counts else "F32"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _output_dtype(reader: GGUFReader) -> str:
    """float16 for quantized files: GGUF blocks scale by float16 factors, so dequantized values
    lie in its range, with 3 more mantissa bits than bfloat16 and half the size of float32.
    bfloat16 when the file holds bfloat16 tensors; float32 when its weights are all float32."""
    kinds = {t.tensor_type.name for t in reader.tensors if len(t.shape) >= 2}
    if "BF16" in kinds:
        return "bfloat16"
    return "float32" if kinds == {"F32"} else "float16"


def _write_weights(
    out_dir: Path, reader: GGUFReader, arch: str, meta: dict[str, Any], progress: ProgressFn | None
) -> tuple[dict[str, Any], int]:
    """model.safetensors + config.json; returns (config, n_params)."""
    dtype = _output_dtype(reader)
    config = _hf_config(meta, arch, reader, dtype)
    plan = _plan(reader, arch, config)
    try:
        _write_safetensors(out_dir / "model.safetensors", plan, dtype, progress)
    except _Float16Overflow:  # values beyond float16's range: bfloat16 keeps float32's range
        dtype = config["torch_dtype"] = "bfloat16"
        _write_safetensors(out_dir / "model.safetensors", plan, dtype, progress)
    _write_json(out_dir / "config.json", config)
    return config, sum(math.prod(p.shape) for p in plan)


def _write_tokenizer(out_dir: Path, meta: dict[str, Any], config: dict[str, Any]) -> None:
    tokenizer = _build_tokenizer(meta)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "tokenizer_config.json",
                _tokenizer_config(meta, config["max_position_embeddings"]))  # fmt: skip
    eos = _eos_ids(meta)
    generation: dict[str, Any] = {"bos_token_id": config.get("bos_token_id")}
    generation["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    if isinstance(pad := meta.get("tokenizer.ggml.padding_token_id"), int):
        generation["pad_token_id"] = pad
    _write_json(out_dir / "generation_config.json", generation)


def _clear(out_dir: Path, before: Iterable[Path]) -> None:
    """Remove what this import wrote, leaving anything that was there before."""
    keep = set(before)
    for entry in out_dir.iterdir():
        if entry not in keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _check_quantize(quantize: int | None, group_size: int) -> None:
    from mlxk.backends.convert import QUANT_BITS, QUANT_GROUP_SIZES

    if quantize is not None and (quantize not in QUANT_BITS or group_size not in QUANT_GROUP_SIZES):
        raise ConversionError(
            f"cannot quantize to {quantize}-bit / group {group_size}; bits: "
            f"{', '.join(map(str, QUANT_BITS))}; group sizes: "
            f"{', '.join(map(str, QUANT_GROUP_SIZES))}"
        )


def _convert(
    out_dir: Path,
    reader: GGUFReader,
    arch: str,
    meta: dict[str, Any],
    quantize: tuple[int, int] | None,
    progress: ProgressFn | None,
) -> tuple[dict[str, Any], int]:
    """Write the model; with ``quantize`` (bits, group) the dequantized model goes to a staging
    directory first and mlx-lm writes the quantized one into ``out_dir``."""
    from mlxk.backends.convert import quantize_model

    target = out_dir / ".dequantized" if quantize else out_dir
    target.mkdir(exist_ok=True)
    config, n_params = _write_weights(target, reader, arch, meta, progress)
    _write_tokenizer(target, meta, config)
    if quantize:
        quantize_model(target, out_dir, bits=quantize[0], group_size=quantize[1])
        shutil.rmtree(target)
    return config, n_params


def import_gguf(
    src: Path,
    out_dir: Path,
    *,
    quantize: int | None = None,
    q_group_size: int = 64,
    progress: ProgressFn | None = None,
) -> GgufImportInfo:
    """Convert a llama-family GGUF file into an MLX model directory at ``out_dir``.

    ``out_dir`` must exist (normally empty); the caller renames it into place. On any error the
    files written here are removed again. ``progress(done_bytes, total_bytes)`` follows the
    writing of the dequantized weights.
    """
    src, out_dir = Path(src), Path(out_dir)
    _check_quantize(quantize, q_group_size)
    reader = _open_reader(src)
    meta = _metadata(reader)
    arch = _architecture(meta)
    before = list(out_dir.iterdir())
    q = None if quantize is None else (quantize, q_group_size)
    try:
        config, n_params = _convert(out_dir, reader, arch, meta, q, progress)
    except BaseException:
        _clear(out_dir, before)
        raise
    source_q = _source_quantization(reader)
    return GgufImportInfo(
        architecture=arch,
        name_guess=_name_guess(src, meta),
        n_params=n_params,
        source_sha256=_sha256(src),
        source_quantization=source_q,
        dtype=config["torch_dtype"],
        quantization=None if q is None else {"bits": q[0], "group_size": q[1]},
        warnings=_precision_warnings(source_q, quantize),
    )


def _precision_warnings(source_q: str, quantize: int | None) -> tuple[str, ...]:
    source_bits = _GGML_BITS.get(source_q)
    if quantize is None or source_bits is None or quantize <= source_bits:
        return ()
    return (
        f"Source already {source_bits}-bit ({source_q}). Quantizing to {quantize}-bit does not "
        "increase precision.",
    )
