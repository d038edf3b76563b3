"""Import a CTranslate2 Whisper model (faster-whisper's ``model.bin``) as an MLX Whisper folder.

The output is what mlx-audio 0.6.2 loads with ``mlxk.backends.speech``: ``model.safetensors``
with mlx-audio's native parameter names (so its ``sanitize`` only casts), an HF-style
``config.json`` with ``model_type: whisper``, ``generation_config.json`` and the processor
files (tokenizer with timestamp tokens, feature extractor) that mlx-audio needs to decode.

numpy and safetensors do the conversion; transformers is imported lazily only to write the
processor files, so ``mlxk.store`` / ``mlxk.cli`` never pay for it at import time.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mlxk.errors import ImportFormatError, UnsupportedArchitectureError

CT2_BINARY_VERSION = 6
WHISPER_SPEC = "WhisperSpec"
N_AUDIO_CTX = 1500  # 30 s of 20 ms frames: mlx-audio's decoding assumes exactly this
N_TIMESTAMPS = 1501  # <|0.00|> … <|30.00|>
_CHUNK = 8 << 20  # read granularity: bounds progress latency and hashing buffers

# CTranslate2 DataType codes -> numpy dtype (bfloat16 is read as raw uint16 and widened)
_DTYPES: dict[int, np.dtype[Any]] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_BF16 = 5

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class WhisperImportInfo:
    name: str  # a guess such as "whisper-tiny.en"
    multilingual: bool
    d_model: int
    encoder_layers: int
    decoder_layers: int
    vocab_size: int
    sha256: str  # of the (joined) model.bin bytes
    source: str  # human-readable description of what was read

    @property
    def layers(self) -> tuple[int, int]:
        return (self.encoder_layers, self.decoder_layers)


# --------------------------------------------------------------------------- source files


_PART_RE = re.compile(r"^model\.bin\.part(\d+)$")


def _part_number(path: Path) -> int | None:
    m = _PART_RE.match(path.name)
    return int(m.group(1)) if m else None


def _parts_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and _part_number(p) is not None]


def _resolve_sources(src: Path, extra_parts: Sequence[Path]) -> tuple[list[Path], Path]:
    """Return the model.bin pieces in stream order and the folder holding the side files."""
    src = Path(src)
    if not src.exists():
        raise ImportFormatError(f"{src}: no such file or folder")
    folder = src if src.is_dir() else src.parent
    if src.is_dir() and (src / "model.bin").is_file():
        pieces = [src / "model.bin"]
    elif src.is_file() and src.name == "model.bin":
        pieces = [src]
    elif src.is_dir() or _part_number(src) is not None:
        pieces = _parts_in(folder)
    else:
        raise ImportFormatError(f"{src}: expected a CTranslate2 model.bin or model.bin.partN")
    if pieces and pieces[0].name == "model.bin" and extra_parts:
        raise ImportFormatError(f"{pieces[0]} is a whole model.bin; extra parts make no sense")
    pieces = _order_parts(pieces + [Path(p) for p in extra_parts])
    return pieces, folder


def _order_parts(pieces: list[Path]) -> list[Path]:
    if not pieces:
        raise ImportFormatError("no model.bin or model.bin.partN found")
    if len(pieces) == 1 and pieces[0].name == "model.bin":
        return pieces
    numbered: dict[int, Path] = {}
    for p in pieces:
        n = _part_number(p)
        if n is None or not p.is_file():
            raise ImportFormatError(f"{p}: not a model.bin.partN file")
        if n in numbered and numbered[n].resolve() != p.resolve():
            raise ImportFormatError(f"model.bin.part{n} given twice: {numbered[n]} and {p}")
        numbered[n] = p
    expected = list(range(1, len(numbered) + 1))
    if sorted(numbered) != expected:
        missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
        raise ImportFormatError(f"model.bin parts incomplete: missing part(s) {missing}")
    return [numbered[n] for n in expected]


class _PartStream:
    """Reads the concatenation of the parts without joining them on disk; hashes as it goes."""

    def __init__(self, parts: list[Path], progress: ProgressFn | None) -> None:
        self._parts = parts
        self.total = sum(p.stat().st_size for p in parts)
        self.done = 0
        self._reported = 0
        self.sha = hashlib.sha256()
        self._progress = progress
        self._files: Generator[BinaryIO, None, None] = (open(p, "rb") for p in parts)  # noqa: SIM115
        self._fh: BinaryIO | None = next(self._files, None)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        # parts not reached yet were never opened: the generator opens lazily
        self._files.close()

    def remaining(self) -> int:
        return self.total - self.done

    def read(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise ImportFormatError(
                f"model.bin truncated: {what} needs {n} bytes at offset {self.done}, "
                f"only {self.remaining()} left"
            )
        out = bytearray()
        while len(out) < n and self._fh is not None:
            chunk = self._fh.read(min(n - len(out), _CHUNK))
            if not chunk:
                self._fh.close()
                self._fh = next(self._files, None)
                continue
            out += chunk
            self._advance(chunk)
        if len(out) < n:  # a part shrank while we read it
            raise ImportFormatError(f"model.bin truncated while reading {what}")
        return bytes(out)

    def _advance(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.done += len(chunk)
        # header fields are a few bytes each: report per chunk, not per field
        due = self.done - self._reported >= _CHUNK or self.done == self.total
        if self._progress is not None and due:
            self._reported = self.done
            self._progress(self.done, self.total)

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize("<" + fmt)
        return int(struct.unpack("<" + fmt, self.read(size, what))[0])

    def string(self, what: str) -> str:
        raw = self.read(self.unpack("H", what), what)
        try:
            return raw.rstrip(b"\x00").decode("utf-8")
        except UnicodeDecodeError as e:
            raise ImportFormatError(f"model.bin corrupt: {what} is not UTF-8") from e


# --------------------------------------------------------------------------- model.bin parsing


def _read_header(stream: _PartStream) -> tuple[str, int]:
    version = stream.unpack("I", "version")
    if version != CT2_BINARY_VERSION:
        raise ImportFormatError(
            f"not a supported CTranslate2 model.bin: binary version {version} "
            f"(expected {CT2_BINARY_VERSION})"
        )
    spec = stream.string("spec name")
    if spec != WHISPER_SPEC:
        raise UnsupportedArchitectureError(
            f"CTranslate2 model is a {spec!r}, not a {WHISPER_SPEC}; only Whisper is supported"
        )
    return spec, stream.unpack("I", "spec revision")


def _read_variable(stream: _PartStream) -> tuple[str, np.ndarray]:
    name = stream.string("variable name")
    rank = stream.unpack("B", f"{name} rank")
    dims = [stream.unpack("I", f"{name} shape") for _ in range(rank)]
    code = stream.unpack("B", f"{name} dtype")
    if code not in _DTYPES:
        raise ImportFormatError(f"model.bin corrupt: {name} has unknown dtype code {code}")
    nbytes = stream.unpack("I", f"{name} byte count")
    dtype = _DTYPES[code]
    if nbytes != int(np.prod(dims, dtype=np.int64)) * dtype.itemsize:
        raise ImportFormatError(f"model.bin corrupt: {name} byte count {nbytes} != shape {dims}")
    arr = np.frombuffer(stream.read(nbytes, name), dtype=dtype).reshape(dims)
    if code == _BF16:  # bfloat16 is the top half of a float32: widen losslessly
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return name, arr


def _read_model(stream: _PartStream) -> tuple[dict[str, np.ndarray], int]:
    _, revision = _read_header(stream)
    count = stream.unpack("I", "variable count")
    if count > 100_000:
        raise ImportFormatError(f"model.bin corrupt: implausible variable count {count}")
    variables = dict(_read_variable(stream) for _ in range(count))
    n_alias = stream.unpack("I", "alias count") if stream.remaining() else 0
    for _ in range(n_alias):
        alias, target = stream.string("alias"), stream.string("alias target")
        if target in variables:  # tied projection: same array, no copy
            variables[alias] = variables[target]
    if stream.remaining():
        raise ImportFormatError(f"model.bin corrupt: {stream.remaining()} trailing bytes")
    return variables, revision


# --------------------------------------------------------------------------- name mapping


@dataclass(frozen=True)
class _Dims:
    d_model: int
    n_mels: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    vocab_size: int
    n_text_ctx: int
    ffn_dim: int


def _need(v: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in v:
        raise ImportFormatError(f"model.bin is missing the Whisper variable {key!r}")
    return v[key]


def _count_layers(v: dict[str, np.ndarray], side: str) -> int:
    pat = re.compile(rf"^{side}/layer_(\d+)/")
    found = {int(m.group(1)) for k in v if (m := pat.match(k))}
    if not found or found != set(range(len(found))):
        raise ImportFormatError(f"model.bin has no consistent {side} layers")
    return len(found)


def _dims(v: dict[str, np.ndarray]) -> _Dims:
    conv1 = _need(v, "encoder/conv1/weight")
    emb = _need(v, "decoder/embeddings/weight")
    enc_pos = _need(v, "encoder/position_encodings/encodings")
    if enc_pos.shape[0] != N_AUDIO_CTX:
        raise UnsupportedArchitectureError(
            f"encoder has {enc_pos.shape[0]} audio positions; mlx-audio needs {N_AUDIO_CTX}"
        )
    return _Dims(
        d_model=int(conv1.shape[0]),
        n_mels=int(conv1.shape[1]),
        encoder_layers=_count_layers(v, "encoder"),
        decoder_layers=_count_layers(v, "decoder"),
        encoder_heads=int(_need(v, "encoder/num_heads")),
        decoder_heads=int(_need(v, "decoder/num_heads")),
        vocab_size=int(emb.shape[0]),
        n_text_ctx=int(_need(v, "decoder/position_encodings/encodings").shape[0]),
        ffn_dim=int(_need(v, "encoder/layer_0/ffn/linear_0/weight").shape[0]),
    )


def _weight(v: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """A weight, dequantized when CTranslate2 stored it as int8 (row scales) or int16 (one
    scale): CTranslate2 quantizes as ``round(w * scale)``."""
    w = _need(v, f"{prefix}/weight")
    if w.dtype in (np.int8, np.int16):
        scale = _need(v, f"{prefix}/weight_scale").astype(np.float32)
        if scale.size == 1:
            scale = scale.reshape(())
        elif scale.shape[0] == w.shape[0]:
            scale = scale.reshape(-1, *([1] * (w.ndim - 1)))
        else:
            raise ImportFormatError(f"model.bin: {prefix}/weight_scale shape {scale.shape}")
        return (w.astype(np.float32) / scale).astype(np.float16)
    if not np.issubdtype(w.dtype, np.floating):
        raise ImportFormatError(f"model.bin: {prefix}/weight has unsupported dtype {w.dtype}")
    return w


def _linear(v: dict[str, np.ndarray], src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = _weight(v, src)
    out[f"{dst}.bias"] = _need(v, f"{src}/bias")


def _norm(v: dict[str, np.ndarray], src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = _need(v, f"{src}/gamma")
    out[f"{dst}.bias"] = _need(v, f"{src}/beta")


def _split_linear(
    v: dict[str, np.ndarray],
    src: str,
    dsts: Sequence[tuple[str, bool]],
    out: dict[str, np.ndarray],
) -> None:
    """Split a fused projection into (name, keep_bias) targets; Whisper's key has no bias."""
    w, b = _weight(v, src), _need(v, f"{src}/bias")
    if w.shape[0] % len(dsts) or b.shape[0] != w.shape[0]:
        raise ImportFormatError(f"model.bin: fused {src} has shape {w.shape}, bias {b.shape}")
    parts = zip(dsts, np.split(w, len(dsts)), np.split(b, len(dsts)), strict=True)
    for (dst, keep_bias), ws, bs in parts:
        out[f"{dst}.weight"] = ws
        if keep_bias:
            out[f"{dst}.bias"] = bs


def _block(v: dict[str, np.ndarray], src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", out)
    qkv = ((f"{dst}.attn.query", True), (f"{dst}.attn.key", False), (f"{dst}.attn.value", True))
    _split_linear(v, f"{src}/self_attention/linear_0", qkv, out)
    _linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out", out)
    _norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", out)
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp1", out)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp2", out)


def _cross(v: dict[str, np.ndarray], src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    _norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", out)
    _linear(v, f"{src}/attention/linear_0", f"{dst}.cross_attn.query", out)
    kv = ((f"{dst}.cross_attn.key", False), (f"{dst}.cross_attn.value", True))
    _split_linear(v, f"{src}/attention/linear_1", kv, out)
    _linear(v, f"{src}/attention/linear_2", f"{dst}.cross_attn.out", out)


def _to_mlx(v: dict[str, np.ndarray], dims: _Dims) -> dict[str, np.ndarray]:
    """CTranslate2 names -> mlx-audio's native Whisper parameter names (no 'model.' prefix)."""
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        # CTranslate2/PyTorch store [out, in, k]; MLX's Conv1d wants [out, k, in]
        out[f"encoder.{conv}.weight"] = _weight(v, f"encoder/{conv}").transpose(0, 2, 1)
        out[f"encoder.{conv}.bias"] = _need(v, f"encoder/{conv}/bias")
    for i in range(dims.encoder_layers):
        _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", out)
    _norm(v, "encoder/layer_norm", "encoder.ln_post", out)
    out["decoder.token_embedding.weight"] = _weight(v, "decoder/embeddings")
    out["decoder.positional_embedding"] = _need(v, "decoder/position_encodings/encodings")
    for i in range(dims.decoder_layers):
        _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", out)
        _cross(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", out)
    _norm(v, "decoder/layer_norm", "decoder.ln", out)
    return {k: np.ascontiguousarray(a) for k, a in out.items()}


# --------------------------------------------------------------------------- naming


_SIZES = {
    (384, 4, 4): "tiny",
    (512, 6, 6): "base",
    (768, 12, 12): "small",
    (1024, 24, 24): "medium",
    (1280, 32, 32): "large",
    (1280, 32, 4): "large-v3-turbo",
    (1280, 32, 2): "distil-large",
    (1024, 24, 2): "distil-medium",
    (768, 12, 2): "distil-small",
}


def _guess_name(dims: _Dims, multilingual: bool) -> str:
    key = (dims.d_model, dims.encoder_layers, dims.decoder_layers)
    size = _SIZES.get(key)
    if size is None:
        return f"whisper-d{dims.d_model}-{dims.encoder_layers}x{dims.decoder_layers}"
    if size == "large" and dims.vocab_size >= 51866:
        size = "large-v3"  # v3 added <|yue|>, growing the vocabulary by one
    suffix = "" if multilingual or size.startswith("large") else ".en"
    return f"whisper-{size}{suffix}"


# --------------------------------------------------------------------------- side files


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ImportFormatError(f"{path}: unreadable {what}: {e}") from e


def _load_tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ImportFormatError(f"{folder}: tokenizer.json is missing next to model.bin")
    data = _read_json(path, "tokenizer.json")
    if not isinstance(data, dict) or "model" not in data or "added_tokens" not in data:
        raise ImportFormatError(f"{path}: not a Hugging Face tokenizers file")
    return data


def _token_ids(tok: dict[str, Any]) -> dict[str, int]:
    ids = {str(k): int(i) for k, i in tok["model"].get("vocab", {}).items()}
    ids.update({str(a["content"]): int(a["id"]) for a in tok["added_tokens"]})
    return ids


def _with_timestamps(tok: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """Append <|0.00|>…<|30.00|>: without them mlx-audio's timestamp rules emit '.' and '!'."""
    ids = _token_ids(tok)
    if "<|0.00|>" in ids:
        return tok
    first = max(ids.values()) + 1
    if first + N_TIMESTAMPS != vocab_size:
        raise ImportFormatError(
            f"tokenizer.json has {first} tokens; plus {N_TIMESTAMPS} timestamps that does not "
            f"match the model's vocabulary of {vocab_size}"
        )
    stamps = [
        {
            "id": first + i,
            "content": f"<|{i * 0.02:.2f}|>",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": False,
        }
        for i in range(N_TIMESTAMPS)
    ]
    return {**tok, "added_tokens": [*tok["added_tokens"], *stamps]}


@dataclass(frozen=True)
class _Specials:
    eot: int
    sot: int
    translate: int
    transcribe: int
    sot_prev: int
    no_timestamps: int
    languages: dict[str, int]  # "<|en|>" -> id


def _specials(tok: dict[str, Any]) -> _Specials:
    ids = _token_ids(tok)
    names = (
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|translate|>",
        "<|transcribe|>",
        "<|startofprev|>",
        "<|notimestamps|>",
    )
    missing = [n for n in names if n not in ids]
    if missing:
        raise ImportFormatError(f"tokenizer.json lacks Whisper's special tokens {missing}")
    eot, sot, translate, transcribe, prev, nots = (ids[n] for n in names)
    # Whisper lays language tokens out between <|startoftranscript|> and <|translate|>
    langs = sorted((i, t) for t, i in ids.items() if sot < i < translate and t.startswith("<|"))
    return _Specials(eot, sot, translate, transcribe, prev, nots, {t: i for i, t in langs})


def _ct2_config(folder: Path) -> dict[str, Any]:
    """CTranslate2's config.json (alignment heads, suppress ids); optional, defaults else."""
    path = folder / "config.json"
    data = _read_json(path, "config.json") if path.is_file() else {}
    return data if isinstance(data, dict) else {}


def _alignment_heads(ct2: dict[str, Any], dims: _Dims) -> list[list[int]]:
    heads = ct2.get("alignment_heads")
    if isinstance(heads, list) and heads:
        return [[int(layer), int(head)] for layer, head in heads]
    # openai-whisper's default when none are known: every head of the last half of layers
    layers = range(dims.decoder_layers // 2, dims.decoder_layers)
    return [[layer, h] for layer in layers for h in range(dims.decoder_heads)]


def _generation_config(
    sp: _Specials, ct2: dict[str, Any], dims: _Dims, multilingual: bool
) -> dict[str, Any]:
    """What Hugging Face writes for Whisper, so HF-style readers find the same settings."""
    gen: dict[str, Any] = {
        "alignment_heads": _alignment_heads(ct2, dims),
        "begin_suppress_tokens": [int(t) for t in ct2.get("suppress_ids_begin", [220, sp.eot])],
        "bos_token_id": sp.eot,
        "decoder_start_token_id": sp.sot,
        "eos_token_id": sp.eot,
        "pad_token_id": sp.eot,
        "is_multilingual": multilingual,
        "max_initial_timestamp_index": 50,
        "max_length": dims.n_text_ctx,
        "no_timestamps_token_id": sp.no_timestamps,
        "prev_sot_token_id": sp.sot_prev,
        "return_timestamps": False,
        "suppress_tokens": [int(t) for t in ct2.get("suppress_ids", [])],
    }
    if multilingual:
        gen["forced_decoder_ids"] = [[1, None], [2, sp.transcribe]]
        gen["lang_to_id"] = sp.languages
        gen["task_to_id"] = {"transcribe": sp.transcribe, "translate": sp.translate}
        gen["lang_ids"] = list(sp.languages.values())
    else:
        gen["forced_decoder_ids"] = [[1, sp.no_timestamps]]
    return gen


def _hf_config(
    dims: _Dims, sp: _Specials, gen: dict[str, Any], dtype: str, provenance: dict[str, Any]
) -> dict[str, Any]:
    """An HF WhisperConfig: mlx-audio maps d_model/encoder_layers/... onto its dimensions."""
    return {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "activation_function": "gelu",
        "d_model": dims.d_model,
        "encoder_layers": dims.encoder_layers,
        "decoder_layers": dims.decoder_layers,
        "encoder_attention_heads": dims.encoder_heads,
        "decoder_attention_heads": dims.decoder_heads,
        "encoder_ffn_dim": dims.ffn_dim,
        "decoder_ffn_dim": dims.ffn_dim,
        "num_hidden_layers": dims.encoder_layers,
        "num_mel_bins": dims.n_mels,
        "vocab_size": dims.vocab_size,
        "max_source_positions": N_AUDIO_CTX,
        "max_target_positions": dims.n_text_ctx,
        "max_length": dims.n_text_ctx,
        "scale_embedding": False,
        "is_encoder_decoder": True,
        "use_cache": True,
        "bos_token_id": sp.eot,
        "eos_token_id": sp.eot,
        "pad_token_id": sp.eot,
        "decoder_start_token_id": sp.sot,
        "begin_suppress_tokens": gen["begin_suppress_tokens"],
        "suppress_tokens": gen["suppress_tokens"],
        "torch_dtype": dtype,
        "mlxk_import": provenance,
    }


def _write_processor(out_dir: Path, n_mels: int) -> None:
    """Write tokenizer_config.json / preprocessor_config.json with transformers (no torch)."""
    # transformers >= 5: WhisperTokenizer is the tokenizers-backed (fast) class
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    try:
        tokenizer = WhisperTokenizer(
            tokenizer_file=str(out_dir / "tokenizer.json"), pad_token="<|endoftext|>"
        )
        features = WhisperFeatureExtractor(feature_size=n_mels)
        WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out_dir)
    except (ValueError, KeyError, TypeError, OSError, RuntimeError) as e:
        raise ImportFormatError(f"tokenizer.json rejected by transformers: {e}") from e
    # transformers 5 folds the extractor into processor_config.json; mlxk's probe and older
    # readers look for the classic file, so write it too
    features.save_pretrained(out_dir)


def _float_dtype(weights: dict[str, np.ndarray]) -> str:
    kinds = {a.dtype for a in weights.values()}
    return "float32" if np.dtype(np.float32) in kinds else "float16"


def _write_weights(out_dir: Path, weights: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    # one float dtype per file keeps the loaders' dtype logic simple
    dtype = np.float32 if _float_dtype(weights) == "float32" else np.float16
    save_file(
        {k: a.astype(dtype, copy=False) for k, a in weights.items()},
        str(out_dir / "model.safetensors"),
        metadata=meta,
    )


def _dump(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- public API


def _describe(parts: list[Path], revision: int) -> str:
    files = " + ".join(str(p) for p in parts)
    return f"CTranslate2 {WHISPER_SPEC} (binary v{CT2_BINARY_VERSION}, rev {revision}) from {files}"


def _parse(
    parts: list[Path], progress: ProgressFn | None
) -> tuple[dict[str, np.ndarray], int, str]:
    stream = _PartStream(parts, progress)
    try:
        variables, revision = _read_model(stream)
    finally:
        stream.close()
    return variables, revision, stream.sha.hexdigest()


def _clean(out_dir: Path, before: set[str]) -> None:
    """Leave out_dir as we found it: the caller's temp dir must stay empty on failure."""
    for p in out_dir.iterdir():
        if p.name in before:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def import_ct2_whisper(
    src: Path,
    out_dir: Path,
    *,
    extra_parts: Sequence[Path] = (),
    progress: ProgressFn | None = None,
) -> WhisperImportInfo:
    """Convert a CTranslate2 Whisper model into an mlx-audio Whisper folder in ``out_dir``."""
    out_dir = Path(out_dir)
    parts, folder = _resolve_sources(Path(src), extra_parts)
    tok = _load_tokenizer_json(folder)  # fail on a missing tokenizer before the big read
    ct2 = _ct2_config(folder)
    variables, revision, sha = _parse(parts, progress)
    dims = _dims(variables)
    weights = _to_mlx(variables, dims)
    tok = _with_timestamps(tok, dims.vocab_size)
    sp = _specials(tok)
    multilingual = dims.vocab_size >= 51865  # mlx-audio's and openai-whisper's rule
    info = WhisperImportInfo(
        name=_guess_name(dims, multilingual),
        multilingual=multilingual,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        vocab_size=dims.vocab_size,
        sha256=sha,
        source=_describe(parts, revision),
    )
    provenance = {
        "format": "ctranslate2",
        "spec": WHISPER_SPEC,
        "spec_revision": revision,
        "source_sha256": sha,
        "name": info.name,
    }
    gen = _generation_config(sp, ct2, dims, multilingual)
    before = {p.name for p in out_dir.iterdir()}
    try:
        _write_weights(out_dir, weights, {"format": "mlx", "source_sha256": sha})
        _dump(out_dir / "tokenizer.json", tok)
        _write_processor(out_dir, dims.n_mels)
        _dump(out_dir / "config.json", _hf_config(dims, sp, gen, _float_dtype(weights), provenance))
        _dump(out_dir / "generation_config.json", gen)
    except BaseException:
        _clean(out_dir, before)
        raise
    return info


def _first_piece(path: Path) -> Path | None:
    if path.is_file():
        return path if path.name == "model.bin" or _part_number(path) == 1 else None
    if not path.is_dir():
        return None
    for name in ("model.bin", "model.bin.part1"):
        if (path / name).is_file():
            return path / name
    return None


def looks_like_ct2_whisper(path: Path) -> bool:
    """Cheap sniff for the import dispatcher: a CTranslate2 v6 header naming WhisperSpec."""
    try:
        piece = _first_piece(Path(path))
        if piece is None:
            return False
        with open(piece, "rb") as fh:
            head = fh.read(4 + 2 + len(WHISPER_SPEC) + 1)
    except OSError:
        return False
    if len(head) < 6 or struct.unpack("<I", head[:4])[0] != CT2_BINARY_VERSION:
        return False
    (n,) = struct.unpack("<H", head[4:6])
    return head[6 : 6 + n].rstrip(b"\x00") == WHISPER_SPEC.encode()
