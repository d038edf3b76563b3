"""Build Hugging Face caches and workspaces holding repos shaped like real ones.

Layout written by `make_cache_repo` is huggingface_hub's own:

    <hub>/models--org--name/blobs/<sha256>
    <hub>/models--org--name/snapshots/<40-hex commit>/<path>  -> ../../blobs/<sha256> (relative)
    <hub>/models--org--name/refs/<branch>                       (commit, no newline)

Configs come from transformers' config classes, processor files from its feature
extractors / image processors, tokenizers from the `tokenizers` library and weights are
tiny but valid safetensors / GGUF / torch-zip files with names like the real ones.
transformers is imported lazily (it is slow to import) and zoo contents are cached.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from safetensors.numpy import save as st_save

FileValue: TypeAlias = bytes | str | Mapping[str, Any] | list[Any]
Files: TypeAlias = dict[str, FileValue]
Tensors: TypeAlias = dict[str, np.ndarray]

QUANT_4BIT: dict[str, int] = {"group_size": 64, "bits": 4}

# --------------------------------------------------------------------------- layout


def repo_folder_name(repo_id: str) -> str:
    """`org/name` -> `models--org--name` (huggingface_hub's naming)."""
    return "models--" + repo_id.replace("/", "--")


def _to_bytes(value: FileValue) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _default_commit(repo_id: str, blobs: Mapping[str, bytes]) -> str:
    digest = hashlib.sha1(repo_id.encode("utf-8"))
    for path in sorted(blobs):
        digest.update(f"\0{path}\0{_sha256(blobs[path])}".encode())
    return digest.hexdigest()


def _write_blob(blobs_dir: Path, data: bytes) -> Path:
    blob = blobs_dir / _sha256(data)
    if not blob.exists():
        blob.write_bytes(data)
    return blob


def _link(snapshot: Path, rel_path: str, blob: Path) -> None:
    link = snapshot / rel_path
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))


def _write_ref(repo_dir: Path, branch: str, commit: str) -> None:
    ref = repo_dir / "refs" / branch
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)


def make_cache_repo(
    hub_dir: Path,
    repo_id: str,
    files: Mapping[str, FileValue],
    *,
    branch: str = "main",
    commit: str | None = None,
    extra_branches: Mapping[str, str] | None = None,
) -> Path:
    """Write one snapshot of `repo_id` into `hub_dir` and return the snapshot path.

    Values: bytes as is, str as UTF-8, dict/list JSON-dumped. Blobs are named by sha256.
    The default commit is a deterministic 40-hex digest of repo_id and contents; call
    again with another `commit` to add a second snapshot (refs/<branch> is rewritten).
    `extra_branches` maps more ref names (e.g. "v1", "refs/pr/1") to commits; point them
    at snapshots that exist, or huggingface_hub calls the repo corrupted.
    """
    payload = {path: _to_bytes(value) for path, value in files.items()}
    commit = commit or _default_commit(repo_id, payload)
    repo_dir = hub_dir / repo_folder_name(repo_id)
    blobs_dir = repo_dir / "blobs"
    snapshot = repo_dir / "snapshots" / commit
    blobs_dir.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path, data in payload.items():
        _link(snapshot, path, _write_blob(blobs_dir, data))
    _write_ref(repo_dir, branch, commit)
    for name, ref_commit in (extra_branches or {}).items():
        _write_ref(repo_dir, name, ref_commit)
    return snapshot


def make_workspace(dir: Path, files: Mapping[str, FileValue]) -> Path:
    """Write plain files (no symlinks) into `dir`, like a converted/working model dir."""
    dir.mkdir(parents=True, exist_ok=True)
    for path, value in files.items():
        target = dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_to_bytes(value))
    return dir


# --------------------------------------------------------------------------- configs

_CONFIG_NOISE = frozenset(
    {
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "problem_type",
        "chunk_size_feed_forward",
        "id2label",
        "label2id",
    }
)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _clean(v)
            for k, v in value.items()
            if k not in _CONFIG_NOISE and not k.startswith("_")
        }
    return value


def _config_dict(config: Any, **extra: Any) -> dict[str, Any]:
    """A transformers config as config.json holds it, minus runtime-only keys."""
    data: dict[str, Any] = _clean(json.loads(config.to_json_string(use_diff=False)))
    data.update(extra)
    return data


def _mlx_quant(config: dict[str, Any]) -> dict[str, Any]:
    """mlx-lm / mlx-vlm write both keys after `convert -q`."""
    return {**config, "quantization": dict(QUANT_4BIT), "quantization_config": dict(QUANT_4BIT)}


def _processor_json(obj: Any, **extra: Any) -> dict[str, Any]:
    """A feature extractor / image processor as preprocessor_config.json holds it."""
    data: dict[str, Any] = json.loads(obj.to_json_string())
    data.update(extra)
    return data


def _generation_config(**values: Any) -> dict[str, Any]:
    import transformers

    config = transformers.GenerationConfig(**values)
    data: dict[str, Any] = json.loads(config.to_json_string())
    return data


# --------------------------------------------------------------------------- README


def _yaml_value(value: str | bool | list[str]) -> list[str]:
    if isinstance(value, bool):
        return [" " + str(value).lower()]
    if isinstance(value, list):
        return [""] + [f"- {item}" for item in value]
    return [" " + value]


def _readme(front: Mapping[str, str | bool | list[str]], body: str) -> str:
    lines = ["---"]
    for key, value in front.items():
        head, *rest = _yaml_value(value)
        lines.append(f"{key}:{head}")
        lines.extend(rest)
    return "\n".join([*lines, "---", "", body, ""])


def _mlx_readme(
    repo_id: str, base_model: str, pipeline: str, library: str = "mlx", tool: str = "mlx-lm"
) -> str:
    front: dict[str, str | bool | list[str]] = {
        "library_name": library,
        "license": "apache-2.0",
        "base_model": base_model,
        "pipeline_tag": pipeline,
        "tags": ["mlx"],
    }
    body = (
        f"# {repo_id}\n\nThis model [{repo_id}](https://huggingface.co/{repo_id}) was "
        f"converted to MLX format from [{base_model}](https://huggingface.co/{base_model}) "
        f"using {tool}."
    )
    return _readme(front, body)


# --------------------------------------------------------------------------- tokenizers

LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    '    {%- set system_message = "" %}\n'
    "{%- endif %}\n"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}\n"
    '{{- "Cutting Knowledge Date: December 2023\\n\\n" }}\n'
    "{{- system_message }}\n"
    "{{- '<|eot_id|>' }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'audio' -%}{{ '<audio_soft_token>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)

QWEN_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@functools.cache
def _bpe_tokenizer_json(specials: tuple[str, ...], unk: str | None = None) -> str:
    """A tiny byte-level BPE tokenizer.json (256 byte symbols + special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    symbols = [*sorted(pre_tokenizers.ByteLevel.alphabet()), *specials]
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(specials))
    text: str = tok.to_str()
    return text


BERT_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "model", "##s", ".")


@functools.cache
def _wordpiece_tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {word: i for i, word in enumerate(BERT_VOCAB)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    text: str = tok.to_str()
    return text


def _tokenizer_files(
    specials: Sequence[str],
    bos: str | None,
    eos: str,
    max_length: int,
    chat_template: str | None = None,
    tokenizer_class: str = "PreTrainedTokenizerFast",
    unk: str | None = None,
) -> Files:
    config: dict[str, Any] = {
        "tokenizer_class": tokenizer_class,
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": unk,
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    named = {"bos_token": bos, "eos_token": eos, "unk_token": unk}
    special_map = {key: token for key, token in named.items() if token is not None}
    return {
        "tokenizer.json": _bpe_tokenizer_json(tuple(specials), unk),
        "tokenizer_config.json": config,
        "special_tokens_map.json": special_map,
    }


# --------------------------------------------------------------------------- weights


def _values(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    count = math.prod(shape)
    return (np.arange(count, dtype=np.float32) / max(count, 1) - 0.5).reshape(shape).astype(dtype)


def _dense(
    names: Iterable[str], shape: tuple[int, ...] = (8, 8), dtype: Any = np.float16
) -> Tensors:
    return {name: _values(shape, dtype) for name in names}


def _quantized(prefixes: Iterable[str], out: int = 8, inp: int = 64) -> Tensors:
    """MLX affine 4-bit layout: packed uint32 weight plus per-group scales and biases."""
    tensors: Tensors = {}
    groups = inp // QUANT_4BIT["group_size"]
    for prefix in prefixes:
        packed = np.arange(out * inp // 8, dtype=np.uint32).reshape(out, inp // 8)
        tensors[f"{prefix}.weight"] = packed * np.uint32(0x01010101)
        tensors[f"{prefix}.scales"] = _values((out, groups), np.float16)
        tensors[f"{prefix}.biases"] = _values((out, groups), np.float16)
    return tensors


def safetensors_bytes(tensors: Tensors, fmt: str = "mlx") -> bytes:
    """Serialize with safetensors; `fmt` goes to the header's __metadata__.format."""
    data: bytes = st_save(tensors, metadata={"format": fmt})
    return data


def _read_header(blob: bytes) -> tuple[dict[str, Any], bytes]:
    size = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def _pack_header(header: Mapping[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def bf16_safetensors_bytes(tensors: Tensors, fmt: str = "mlx") -> bytes:
    """BF16 tensors (numpy has no bfloat16): store the top 16 bits, retag the header."""
    halves = {
        name: (arr.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        for name, arr in tensors.items()
    }
    header, body = _read_header(safetensors_bytes(halves, fmt))
    for name, info in header.items():
        if name != "__metadata__":
            info["dtype"] = "BF16"
    return _pack_header(header, body)


def shard_name(index: int, total: int) -> str:
    return f"model-{index:05d}-of-{total:05d}.safetensors"


def _split(tensors: Tensors, total: int) -> list[Tensors]:
    parts: list[Tensors] = [{} for _ in range(total)]
    for i, name in enumerate(sorted(tensors)):
        parts[i * total // len(tensors)][name] = tensors[name]
    return parts


def _index(parts: Sequence[Tensors]) -> dict[str, Any]:
    weight_map = {
        name: shard_name(i + 1, len(parts)) for i, part in enumerate(parts) for name in sorted(part)
    }
    total = sum(arr.nbytes for part in parts for arr in part.values())
    return {"metadata": {"total_size": total}, "weight_map": weight_map}


def sharded_files(tensors: Tensors, total: int = 2, fmt: str = "mlx", bf16: bool = False) -> Files:
    """`total` shards plus model.safetensors.index.json, like save_pretrained writes."""
    parts = _split(tensors, total)
    encode = bf16_safetensors_bytes if bf16 else safetensors_bytes
    files: Files = {shard_name(i + 1, total): encode(part, fmt) for i, part in enumerate(parts)}
    files["model.safetensors.index.json"] = _index(parts)
    return files


# ---- torch zip checkpoint, written without torch (pickle opcodes by hand)


def _pkl_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def _pkl_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _pkl_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _pkl_tuple(items: Iterable[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _strides(shape: Sequence[int]) -> list[int]:
    return [math.prod(shape[i + 1 :]) for i in range(len(shape))]


def _pkl_tensor(key: str, shape: Sequence[int]) -> bytes:
    storage = _pkl_tuple(
        [
            _pkl_str("storage"),
            _pkl_global("torch", "FloatStorage"),
            _pkl_str(key),
            _pkl_str("cpu"),
            _pkl_int(math.prod(shape)),
        ]
    )
    args = _pkl_tuple(
        [
            storage + b"Q",  # BINPERSID
            _pkl_int(0),
            _pkl_tuple(_pkl_int(n) for n in shape),
            _pkl_tuple(_pkl_int(n) for n in _strides(shape)),
            b"\x89",  # requires_grad=False
            _pkl_global("collections", "OrderedDict") + b")R",
        ]
    )
    return _pkl_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _state_dict_pickle(tensors: Tensors) -> bytes:
    items = b"".join(
        _pkl_str(name) + _pkl_tensor(str(i), arr.shape)
        for i, (name, arr) in enumerate(tensors.items())
    )
    return b"\x80\x02" + _pkl_global("collections", "OrderedDict") + b")R(" + items + b"u."


def torch_bin_bytes(tensors: Tensors) -> bytes:
    """A `torch.save(state_dict)` zip archive (float32 tensors), without importing torch."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", _state_dict_pickle(tensors))
        archive.writestr("archive/byteorder", "little")
        for i, arr in enumerate(tensors.values()):
            archive.writestr(f"archive/data/{i}", arr.astype("<f4").tobytes())
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


# ---- GGUF


def gguf_bytes(name: str = "LLaMA v2", context: int = 4096) -> bytes:
    """A tiny valid llama GGUF (real-looking metadata, two small F32 tensors)."""
    import gguf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        writer = gguf.GGUFWriter(path, "llama")
        writer.add_name(name)
        writer.add_context_length(context)
        writer.add_embedding_length(4096)
        writer.add_block_count(32)
        writer.add_feed_forward_length(11008)
        writer.add_head_count(32)
        writer.add_head_count_kv(32)
        writer.add_layer_norm_rms_eps(1e-6)
        writer.add_file_type(15)  # MOSTLY_Q4_K_M
        writer.add_tokenizer_model("llama")
        writer.add_tensor("token_embd.weight", _values((16, 8), np.float32))
        writer.add_tensor("output_norm.weight", _values((8,), np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


# --------------------------------------------------------------------------- zoo


@dataclass(frozen=True)
class ZooEntry:
    repo_id: str
    framework: str  # "MLX" / "GGUF" / "PyTorch"
    model_type: str  # "chat" / "base" / "audio" / "embedding"
    capabilities: frozenset[str]
    audio_backend: str | None  # "mlx-audio" / "mlx-vlm" / None
    vision: bool


CHAT = frozenset({"text-generation", "chat"})
CHAT_VISION = CHAT | {"vision"}
CHAT_VISION_AUDIO = CHAT_VISION | {"audio"}
AUDIO = frozenset({"audio"})
AUDIO_TRANSLATE = AUDIO | {"audio-translate-en"}

# ---- Whisper

WHISPER_TINY: dict[str, Any] = {
    "d_model": 384,
    "encoder_layers": 4,
    "decoder_layers": 4,
    "encoder_attention_heads": 6,
    "decoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_ffn_dim": 1536,
    "num_mel_bins": 80,
}
WHISPER_LARGE_V3: dict[str, Any] = {
    "d_model": 1280,
    "encoder_layers": 32,
    "decoder_layers": 32,
    "encoder_attention_heads": 20,
    "decoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "decoder_ffn_dim": 5120,
    "num_mel_bins": 128,
}
WHISPER_TURBO: dict[str, Any] = {**WHISPER_LARGE_V3, "decoder_layers": 4}

WHISPER_WEIGHT_NAMES = (
    "model.encoder.conv1.weight",
    "model.encoder.conv2.weight",
    "model.encoder.embed_positions.weight",
    "model.encoder.layers.0.self_attn.q_proj.weight",
    "model.encoder.layers.0.fc1.weight",
    "model.encoder.layer_norm.weight",
    "model.decoder.embed_tokens.weight",
    "model.decoder.layers.0.self_attn.k_proj.weight",
    "model.decoder.layers.0.encoder_attn.v_proj.weight",
    "model.decoder.layer_norm.weight",
)


def _whisper_token_ids(vocab: int) -> dict[str, Any]:
    """Special-token ids of the .en (51864), multilingual (51865) and v3 (51866) vocabs."""
    if vocab == 51864:
        return {
            "bos_token_id": 50257,
            "eos_token_id": 50256,
            "pad_token_id": 50256,
            "decoder_start_token_id": 50257,
            "begin_suppress_tokens": [220, 50256],
        }
    return {
        "bos_token_id": 50257,
        "eos_token_id": 50257,
        "pad_token_id": 50257,
        "decoder_start_token_id": 50258,
        "begin_suppress_tokens": [220, 50257],
    }


def _whisper_config(dims: Mapping[str, Any], vocab: int) -> dict[str, Any]:
    import transformers

    config = transformers.WhisperConfig(
        **dims,
        **_whisper_token_ids(vocab),
        vocab_size=vocab,
        max_source_positions=1500,
        max_target_positions=448,
        architectures=["WhisperForConditionalGeneration"],
        dtype="float16",
    )
    return _config_dict(config)


def _whisper_generation(vocab: int) -> dict[str, Any]:
    if vocab == 51864:
        return _generation_config(
            is_multilingual=False,
            decoder_start_token_id=50257,
            no_timestamps_token_id=50362,
            max_length=448,
            alignment_heads=[[1, 0], [2, 0], [2, 5], [3, 0], [3, 1]],
        )
    v3 = vocab == 51866
    return _generation_config(
        is_multilingual=True,
        decoder_start_token_id=50258,
        no_timestamps_token_id=50364 if v3 else 50363,
        max_length=448,
        lang_to_id={"<|en|>": 50259, "<|de|>": 50261, "<|fr|>": 50265, "<|ja|>": 50266},
        task_to_id={"translate": 50359 if v3 else 50358, "transcribe": 50360 if v3 else 50359},
        alignment_heads=[[7, 0], [10, 17], [12, 18], [13, 12], [16, 1]],
    )


def _whisper_preprocessor(mels: int) -> dict[str, Any]:
    import transformers

    extractor = transformers.WhisperFeatureExtractor(feature_size=mels)
    return _processor_json(extractor, processor_class="WhisperProcessor")


def _whisper_tokenizer(vocab: int) -> Files:
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]
    if vocab != 51864:
        specials += ["<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>"]
    return _tokenizer_files(
        specials, "<|endoftext|>", "<|endoftext|>", 448, tokenizer_class="WhisperTokenizer"
    )


def _whisper_files(dims: Mapping[str, Any], vocab: int) -> Files:
    return {
        "config.json": _whisper_config(dims, vocab),
        "generation_config.json": _whisper_generation(vocab),
        "preprocessor_config.json": _whisper_preprocessor(dims["num_mel_bins"]),
        **_whisper_tokenizer(vocab),
    }


def _mlx_whisper(repo_id: str, dims: Mapping[str, Any], vocab: int, base: str) -> Files:
    weights = safetensors_bytes(_dense(WHISPER_WEIGHT_NAMES), "mlx")
    readme = _mlx_readme(repo_id, base, "automatic-speech-recognition", tool="mlx-audio")
    return {**_whisper_files(dims, vocab), "model.safetensors": weights, "README.md": readme}


def _whisper_tiny_en() -> tuple[ZooEntry, Files]:
    repo = "mlx-community/whisper-tiny.en-mlx"
    files = _mlx_whisper(repo, WHISPER_TINY, 51864, "openai/whisper-tiny.en")
    return ZooEntry(repo, "MLX", "audio", AUDIO, "mlx-audio", False), files


def _whisper_large_v3() -> tuple[ZooEntry, Files]:
    repo = "mlx-community/whisper-large-v3-mlx"
    files = _mlx_whisper(repo, WHISPER_LARGE_V3, 51866, "openai/whisper-large-v3")
    return ZooEntry(repo, "MLX", "audio", AUDIO_TRANSLATE, "mlx-audio", False), files


def _whisper_turbo() -> tuple[ZooEntry, Files]:
    # Turbo's generation_config still lists a "translate" task id (same tokenizer as v3),
    # but the model was not trained for translation: expectation is {audio} only.
    repo = "mlx-community/whisper-large-v3-turbo"
    files = _mlx_whisper(repo, WHISPER_TURBO, 51866, "openai/whisper-large-v3-turbo")
    return ZooEntry(repo, "MLX", "audio", AUDIO, "mlx-audio", False), files


def _openai_whisper_tiny() -> tuple[ZooEntry, Files]:
    # PyTorch-only: no safetensors, a real torch zip checkpoint. Multilingual, not .en,
    # not turbo -> by the large-v3 rule it can translate to English as well.
    repo = "openai/whisper-tiny"
    readme = _readme(
        {
            "language": ["en", "de", "fr"],
            "tags": ["audio", "automatic-speech-recognition"],
            "pipeline_tag": "automatic-speech-recognition",
            "license": "apache-2.0",
        },
        "# Whisper\n\nWhisper is a pre-trained model for automatic speech recognition.",
    )
    weights = torch_bin_bytes(_dense(WHISPER_WEIGHT_NAMES, dtype=np.float32))
    files = {
        **_whisper_files(WHISPER_TINY, 51865),
        "pytorch_model.bin": weights,
        "README.md": readme,
    }
    return ZooEntry(repo, "PyTorch", "audio", AUDIO_TRANSLATE, "mlx-audio", False), files


# ---- Voxtral


def _voxtral() -> tuple[ZooEntry, Files]:
    import transformers

    repo = "mlx-community/Voxtral-Mini-3B-2507-bf16"
    config = transformers.VoxtralConfig(
        architectures=["VoxtralForConditionalGeneration"], audio_token_id=24, dtype="bfloat16"
    )
    names = (
        "audio_tower.conv1.weight",
        "audio_tower.layers.0.self_attn.q_proj.weight",
        "audio_tower.layer_norm.weight",
        "multi_modal_projector.linear_1.weight",
        "multi_modal_projector.linear_2.weight",
        "language_model.model.embed_tokens.weight",
        "language_model.model.layers.0.self_attn.q_proj.weight",
        "language_model.model.norm.weight",
        "language_model.lm_head.weight",
    )
    extractor = transformers.WhisperFeatureExtractor(feature_size=128)
    files: Files = {
        "config.json": _config_dict(config),
        "generation_config.json": _generation_config(
            bos_token_id=1, eos_token_id=2, pad_token_id=11
        ),
        "preprocessor_config.json": _processor_json(extractor, processor_class="VoxtralProcessor"),
        # no tekken.json on purpose: tokenizer.json only, no chat template
        **_tokenizer_files(["<unk>", "<s>", "</s>", "[AUDIO]"], "<s>", "</s>", 131072, unk="<unk>"),
        "model.safetensors": bf16_safetensors_bytes(_dense(names, dtype=np.float32)),
        "README.md": _mlx_readme(
            repo,
            "mistralai/Voxtral-Mini-3B-2507",
            "automatic-speech-recognition",
            tool="mlx-audio",
        ),
    }
    return ZooEntry(repo, "MLX", "audio", AUDIO, "mlx-audio", False), files


# ---- vision / omni chat models (mlx-vlm)


def _vlm_files(repo: str, base: str, config: dict[str, Any], tensors: Tensors) -> Files:
    return {
        "config.json": _mlx_quant(config),
        "model.safetensors": safetensors_bytes(tensors, "mlx"),
        "README.md": _mlx_readme(
            repo, base, "image-text-to-text", library="transformers", tool="mlx-vlm"
        ),
    }


GEMMA_SPECIALS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
]


def _gemma_tokenizer(with_audio: bool) -> Files:
    specials = GEMMA_SPECIALS + (["<audio_soft_token>"] if with_audio else [])
    return _tokenizer_files(
        specials, "<bos>", "<eos>", 32768, GEMMA_CHAT_TEMPLATE, "GemmaTokenizer", unk="<unk>"
    )


def _gemma3n_preprocessor() -> dict[str, Any]:
    """google/gemma-3n ships one preprocessor_config.json for audio and images."""
    import transformers

    audio = _processor_json(transformers.Gemma3nAudioFeatureExtractor())
    image = _processor_json(
        transformers.SiglipImageProcessorPil(size={"height": 768, "width": 768})
    )
    return {**audio, **image, "processor_class": "Gemma3nProcessor"}


def _gemma3n() -> tuple[ZooEntry, Files]:
    import transformers

    repo = "mlx-community/gemma-3n-E2B-it-4bit"
    config = transformers.Gemma3nConfig(
        architectures=["Gemma3nForConditionalGeneration"], dtype="bfloat16"
    )
    tensors = {
        **_quantized(["language_model.model.layers.0.self_attn.q_proj"]),
        **_dense(["language_model.model.norm.weight"], (8,)),
        **_dense(["vision_tower.timm_model.conv_stem.conv.weight"], (8, 3, 3, 3)),
        **_dense(["audio_tower.subsample_conv_projection.conv_0.conv.weight"], (8, 3, 3, 1)),
        **_quantized(["audio_tower.conformer.0.attention.attn.q_proj"]),
        **_dense(["embed_audio.embedding.weight", "embed_vision.embedding.weight"]),
    }
    files = {
        **_vlm_files(repo, "google/gemma-3n-E2B-it", _config_dict(config), tensors),
        **_gemma_tokenizer(with_audio=True),
        "preprocessor_config.json": _gemma3n_preprocessor(),
        "processor_config.json": {
            "audio_seq_length": 188,
            "image_seq_length": 256,
            "processor_class": "Gemma3nProcessor",
        },
        "chat_template.json": {"chat_template": GEMMA_CHAT_TEMPLATE},
        "generation_config.json": _generation_config(bos_token_id=2, eos_token_id=[1, 106]),
    }
    return ZooEntry(repo, "MLX", "chat", CHAT_VISION_AUDIO, "mlx-vlm", True), files


def _gemma3() -> tuple[ZooEntry, Files]:
    import transformers

    repo = "mlx-community/gemma-3-4b-it-4bit"
    config = transformers.Gemma3Config(
        text_config={
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "num_hidden_layers": 34,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "max_position_embeddings": 131072,
            "vocab_size": 262208,
        },
        vision_config={
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "image_size": 896,
            "patch_size": 14,
        },
        mm_tokens_per_image=256,
        architectures=["Gemma3ForConditionalGeneration"],
        dtype="bfloat16",
    )
    tensors = {
        **_quantized(
            [
                "language_model.model.layers.0.self_attn.q_proj",
                "language_model.model.layers.0.mlp.gate_proj",
            ]
        ),
        **_dense(["language_model.model.norm.weight"], (8,)),
        **_quantized(["vision_tower.vision_model.encoder.layers.0.self_attn.q_proj"]),
        **_dense(["vision_tower.vision_model.embeddings.patch_embedding.weight"], (8, 14, 14, 3)),
        **_dense(["multi_modal_projector.mm_input_projection_weight"]),
    }
    image = transformers.Gemma3ImageProcessorPil(size={"height": 896, "width": 896})
    files = {
        **_vlm_files(repo, "google/gemma-3-4b-it", _config_dict(config), tensors),
        **_gemma_tokenizer(with_audio=False),
        "preprocessor_config.json": _processor_json(image, processor_class="Gemma3Processor"),
        "processor_config.json": {"image_seq_length": 256, "processor_class": "Gemma3Processor"},
        "chat_template.json": {"chat_template": GEMMA_CHAT_TEMPLATE},
        "generation_config.json": _generation_config(bos_token_id=2, eos_token_id=[1, 106]),
    }
    return ZooEntry(repo, "MLX", "chat", CHAT_VISION, None, True), files


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_VISION_SPECIALS = [*QWEN_SPECIALS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]


def _qwen2_vl() -> tuple[ZooEntry, Files]:
    import transformers

    repo = "mlx-community/Qwen2-VL-2B-Instruct-4bit"
    config = transformers.Qwen2VLConfig(
        text_config={
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "max_position_embeddings": 32768,
        },
        vision_config={"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16},
        architectures=["Qwen2VLForConditionalGeneration"],
        dtype="bfloat16",
    )
    tensors = {
        **_quantized(["language_model.model.layers.0.self_attn.q_proj"]),
        **_dense(["language_model.model.norm.weight"], (8,)),
        **_dense(["vision_tower.patch_embed.proj.weight"], (8, 3, 2, 14, 14)),
        **_dense(["vision_tower.blocks.0.attn.qkv.weight", "vision_tower.merger.mlp.0.weight"]),
    }
    image = transformers.Qwen2VLImageProcessorPil()
    files = {
        **_vlm_files(repo, "Qwen/Qwen2-VL-2B-Instruct", _config_dict(config), tensors),
        **_tokenizer_files(
            QWEN_VISION_SPECIALS, None, "<|im_end|>", 32768, QWEN_VL_CHAT_TEMPLATE, "Qwen2Tokenizer"
        ),
        "preprocessor_config.json": _processor_json(image, processor_class="Qwen2VLProcessor"),
        "chat_template.json": {"chat_template": QWEN_VL_CHAT_TEMPLATE},
        "generation_config.json": _generation_config(bos_token_id=151643, eos_token_id=151645),
    }
    return ZooEntry(repo, "MLX", "chat", CHAT_VISION, None, True), files


def _qwen3_omni_preprocessor() -> dict[str, Any]:
    """Qwen3-Omni: Whisper audio features + Qwen2-VL image processor in one file."""
    import transformers

    audio = _processor_json(transformers.WhisperFeatureExtractor(feature_size=128))
    image = _processor_json(transformers.Qwen2VLImageProcessorPil(patch_size=16))
    return {**image, **audio, "processor_class": "Qwen3OmniMoeProcessor"}


QWEN3_OMNI_WEIGHT_NAMES = (
    "thinker.model.embed_tokens.weight",
    "thinker.model.layers.0.self_attn.q_proj.weight",
    "thinker.model.layers.0.mlp.experts.0.gate_proj.weight",
    "thinker.model.layers.0.mlp.gate.weight",
    "thinker.model.norm.weight",
    "thinker.lm_head.weight",
    "thinker.audio_tower.conv2d1.weight",
    "thinker.audio_tower.layers.0.self_attn.q_proj.weight",
    "thinker.visual.patch_embed.proj.weight",
    "thinker.visual.blocks.0.attn.qkv.weight",
    "talker.model.layers.0.self_attn.q_proj.weight",
    "code2wav.decoder.0.conv.weight",
)


def _qwen3_omni() -> tuple[ZooEntry, Files]:
    # The seed's rule (WhisperFeatureExtractor -> mlx-audio) would pick mlx-audio, but in the
    # installed libraries only mlx-vlm has models/qwen3_omni_moe; mlx_audio/stt/models has no
    # such package (mlx-audio's tts/fish_qwen3_omni is a different model_type). -> mlx-vlm.
    import transformers

    repo = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    config = transformers.Qwen3OmniMoeConfig(
        architectures=["Qwen3OmniMoeForConditionalGeneration"],
        enable_audio_output=True,
        dtype="bfloat16",
    )
    readme = _readme(
        {
            "license": "other",
            "license_name": "apache-2.0",
            "pipeline_tag": "any-to-any",
            "library_name": "transformers",
        },
        "# Qwen3-Omni\n\nQwen3-Omni is a natively end-to-end multilingual omni-modal model.",
    )
    specials = [*QWEN_VISION_SPECIALS, "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]
    files: Files = {
        "config.json": _config_dict(config),
        "preprocessor_config.json": _qwen3_omni_preprocessor(),
        "chat_template.json": {"chat_template": QWEN_VL_CHAT_TEMPLATE},
        **_tokenizer_files(
            specials, None, "<|im_end|>", 65536, QWEN_VL_CHAT_TEMPLATE, "Qwen2Tokenizer"
        ),
        "generation_config.json": _generation_config(bos_token_id=151643, eos_token_id=151645),
        **sharded_files(_dense(QWEN3_OMNI_WEIGHT_NAMES, dtype=np.float32), 2, "pt", bf16=True),
        "README.md": readme,
    }
    return ZooEntry(repo, "PyTorch", "chat", CHAT_VISION_AUDIO, "mlx-vlm", True), files


# ---- text LLMs (mlx-lm)

LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
LLM_WEIGHT_PREFIXES = (
    "model.embed_tokens",
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.k_proj",
    "model.layers.0.mlp.down_proj",
)
LLM_NORMS = ("model.layers.0.input_layernorm.weight", "model.norm.weight")


def llm_tensors() -> Tensors:
    """A 4-bit MLX decoder's weight names (tiny shapes)."""
    return {**_quantized(LLM_WEIGHT_PREFIXES), **_dense(LLM_NORMS, (8,))}


@functools.cache
def _llama32_config() -> dict[str, Any]:
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        max_position_embeddings=131072,
        tie_word_embeddings=True,
        bos_token_id=128000,
        eos_token_id=[128001, 128008, 128009],
        architectures=["LlamaForCausalLM"],
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        dtype="bfloat16",
    )
    return _mlx_quant(_config_dict(config))


def _llama_tokenizer() -> Files:
    return _tokenizer_files(
        LLAMA3_SPECIALS, "<|begin_of_text|>", "<|eot_id|>", 131072, LLAMA3_CHAT_TEMPLATE
    )


def _llama32() -> tuple[ZooEntry, Files]:
    repo = "mlx-community/Llama-3.2-1B-Instruct-4bit"
    files: Files = {
        "config.json": _llama32_config(),
        **_llama_tokenizer(),
        "generation_config.json": _generation_config(
            bos_token_id=128000,
            eos_token_id=[128001, 128008, 128009],
            do_sample=True,
            temperature=0.6,
            top_p=0.9,
        ),
        "model.safetensors": safetensors_bytes(llm_tensors(), "mlx"),
        "README.md": _mlx_readme(repo, "meta-llama/Llama-3.2-1B-Instruct", "text-generation"),
    }
    return ZooEntry(repo, "MLX", "chat", CHAT, None, False), files


def _qwen25_base() -> tuple[ZooEntry, Files]:
    # The real Qwen2.5-0.5B (base) tokenizer_config carries a ChatML template; this
    # fixture leaves it out so the repo is a pure base model.
    import transformers

    repo = "mlx-community/Qwen2.5-0.5B-4bit"
    config = transformers.Qwen2Config(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151643,
        architectures=["Qwen2ForCausalLM"],
        dtype="bfloat16",
    )
    files: Files = {
        "config.json": _mlx_quant(_config_dict(config)),
        **_tokenizer_files(QWEN_SPECIALS, None, "<|endoftext|>", 32768, None, "Qwen2Tokenizer"),
        "generation_config.json": _generation_config(bos_token_id=151643, eos_token_id=151643),
        "model.safetensors": safetensors_bytes(llm_tensors(), "mlx"),
        "README.md": _mlx_readme(repo, "Qwen/Qwen2.5-0.5B", "text-generation"),
    }
    return ZooEntry(repo, "MLX", "base", frozenset({"text-generation"}), None, False), files


# ---- embeddings / GGUF

MINILM_WEIGHT_NAMES = (
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.attention.output.dense.weight",
    "encoder.layer.0.intermediate.dense.weight",
    "pooler.dense.weight",
)


def _sentence_transformers_files() -> Files:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    pooling = {
        "word_embedding_dimension": 384,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    return {
        "modules.json": modules,
        "1_Pooling/config.json": pooling,
        "sentence_bert_config.json": {"max_seq_length": 256, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "__version__": {"sentence_transformers": "2.0.0", "transformers": "4.6.1"}
        },
    }


def _minilm() -> tuple[ZooEntry, Files]:
    import transformers

    repo = "sentence-transformers/all-MiniLM-L6-v2"
    config = transformers.BertConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        vocab_size=30522,
        max_position_embeddings=512,
        architectures=["BertModel"],
        dtype="float32",
    )
    readme = _readme(
        {
            "language": "en",
            "license": "apache-2.0",
            "library_name": "sentence-transformers",
            "tags": [
                "sentence-transformers",
                "feature-extraction",
                "sentence-similarity",
                "transformers",
            ],
            "pipeline_tag": "sentence-similarity",
        },
        "# all-MiniLM-L6-v2\n\nThis is a sentence-transformers model: it maps sentences to a "
        "384 dimensional dense vector space.",
    )
    files: Files = {
        "config.json": _config_dict(config),
        **_sentence_transformers_files(),
        "tokenizer.json": _wordpiece_tokenizer_json(),
        "vocab.txt": "\n".join(BERT_VOCAB) + "\n",
        "tokenizer_config.json": {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": True,
            "model_max_length": 512,
        },
        "special_tokens_map.json": {
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        },
        "model.safetensors": safetensors_bytes(_dense(MINILM_WEIGHT_NAMES, dtype=np.float32), "pt"),
        "README.md": readme,
    }
    return ZooEntry(repo, "PyTorch", "embedding", frozenset({"embeddings"}), None, False), files


def _llama2_gguf() -> tuple[ZooEntry, Files]:
    # No chat template inside the GGUF (TheBloke's Llama-2 files predate them); "Chat" in
    # the name is what marks it as a chat model.
    repo = "TheBloke/Llama-2-7B-Chat-GGUF"
    readme = _readme(
        {
            "base_model": "meta-llama/Llama-2-7b-chat-hf",
            "inference": False,
            "license": "llama2",
            "model_creator": "Meta Llama 2",
            "model_name": "Llama 2 7B Chat",
            "model_type": "llama",
            "pipeline_tag": "text-generation",
            "quantized_by": "TheBloke",
            "tags": ["facebook", "meta", "pytorch", "llama", "llama-2"],
        },
        "# Llama 2 7B Chat - GGUF\n\nThis repo contains GGUF format model files for "
        "Meta Llama 2's Llama 2 7B Chat.",
    )
    files: Files = {"llama-2-7b-chat.Q4_K_M.gguf": gguf_bytes(), "README.md": readme}
    return ZooEntry(repo, "GGUF", "chat", CHAT, None, False), files


ZOO_BUILDERS = (
    _whisper_tiny_en,
    _whisper_large_v3,
    _whisper_turbo,
    _voxtral,
    _gemma3n,
    _gemma3,
    _qwen2_vl,
    _llama32,
    _qwen25_base,
    _minilm,
    _llama2_gguf,
    _openai_whisper_tiny,
    _qwen3_omni,
)


@functools.cache
def _zoo() -> tuple[tuple[ZooEntry, Files], ...]:
    return tuple(build() for build in ZOO_BUILDERS)


def zoo_specs() -> list[tuple[ZooEntry, Files]]:
    """Every zoo repo's expectations and files (cached; each call gets fresh dicts)."""
    return [(entry, dict(files)) for entry, files in _zoo()]


def build_zoo(hub_dir: Path) -> list[ZooEntry]:
    """Write the zoo into `hub_dir` (one snapshot + refs/main each); return expectations."""
    entries = []
    for entry, files in zoo_specs():
        make_cache_repo(hub_dir, entry.repo_id, files)
        entries.append(entry)
    return entries


# --------------------------------------------------------------------------- broken repos


def small_llama_files(weights: Files | None = None) -> Files:
    """A complete small MLX llama repo; `weights` replaces model.safetensors."""
    files: Files = {
        "config.json": _llama32_config(),
        **_llama_tokenizer(),
        "README.md": _mlx_readme(
            "mlx-community/tiny", "meta-llama/Llama-3.2-1B-Instruct", "text-generation"
        ),
    }
    files.update(
        weights
        if weights is not None
        else {"model.safetensors": safetensors_bytes(llm_tensors(), "mlx")}
    )
    return files


def _truncated() -> Files:
    data = safetensors_bytes(llm_tensors(), "mlx")
    return small_llama_files({"model.safetensors": data[:-40]})


def _missing_shard() -> Files:
    files = sharded_files(llm_tensors(), 2)
    del files[shard_name(2, 2)]
    return small_llama_files(files)


def _tensor_not_in_shard() -> Files:
    """The index names lm_head.weight in shard 2, which does not hold it."""
    files = sharded_files(llm_tensors(), 2)
    index = _index(_split(llm_tensors(), 2))
    index["weight_map"]["lm_head.weight"] = shard_name(2, 2)
    files["model.safetensors.index.json"] = index
    return small_llama_files(files)


def _shards_without_index() -> Files:
    files = sharded_files(llm_tensors(), 2)
    del files["model.safetensors.index.json"]
    return small_llama_files(files)


def lfs_pointer(data: bytes) -> str:
    """The text git-lfs leaves in place of a file that was never smudged."""
    return (
        "version https://git-lfs.github.com/spec/v1\n"
        f"oid sha256:{_sha256(data)}\nsize {len(data)}\n"
    )


def _lfs_pointer_weights() -> Files:
    pointer = lfs_pointer(safetensors_bytes(llm_tensors(), "mlx"))
    return small_llama_files({"model.safetensors": pointer})


def _invalid_config() -> Files:
    files = small_llama_files()
    files["config.json"] = '{\n  "model_type": "llama",\n  "hidden_size": 2048,\n  "num_hidden'
    return files


def _add_incomplete(snapshot: Path) -> None:
    """A download in progress: partial blob, no snapshot link to it yet (hf_hub's order)."""
    data = safetensors_bytes(llm_tensors(), "mlx")
    (snapshot / "model.safetensors").unlink()
    blobs = snapshot.parent.parent / "blobs"
    (blobs / _sha256(data)).unlink()
    (blobs / f"{_sha256(data)}.incomplete").write_bytes(data[: len(data) // 3])


def _add_escaping_symlink(snapshot: Path) -> None:
    """model.safetensors -> an absolute path outside the cache (a valid file there)."""
    hub_dir = snapshot.parents[2]
    outside = hub_dir.parent / f"{hub_dir.name}-outside" / "model.safetensors"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(safetensors_bytes(llm_tensors(), "mlx"))
    link = snapshot / "model.safetensors"
    link.unlink()
    link.symlink_to(outside)


BROKEN = (
    ("mlxk-test/broken-truncated-safetensors", _truncated, None, "truncated"),
    ("mlxk-test/broken-missing-shard", _missing_shard, None, "missing"),
    ("mlxk-test/broken-tensor-not-in-shard", _tensor_not_in_shard, None, "not in"),
    ("mlxk-test/broken-shards-without-index", _shards_without_index, None, "index missing"),
    ("mlxk-test/broken-lfs-pointer", _lfs_pointer_weights, None, "lfs pointer"),
    ("mlxk-test/broken-incomplete-download", small_llama_files, _add_incomplete, "incomplete"),
    ("mlxk-test/broken-symlink-outside", small_llama_files, _add_escaping_symlink, "symlink"),
    ("mlxk-test/broken-invalid-config", _invalid_config, None, "config.json"),
)


def build_broken(hub_dir: Path) -> list[tuple[str, str]]:
    """One repo per defect; returns (repo_id, lowercase substring of the health reason)."""
    expected = []
    for repo_id, make_files, damage, reason in BROKEN:
        snapshot = make_cache_repo(hub_dir, repo_id, make_files())
        if damage is not None:
            damage(snapshot)
        expected.append((repo_id, reason))
    return expected


def build_healthy_sharded(hub_dir: Path) -> str:
    """A healthy 2-shard MLX llama repo with a correct index; returns its repo_id."""
    repo_id = "mlxk-test/healthy-sharded"
    make_cache_repo(hub_dir, repo_id, small_llama_files(sharded_files(llm_tensors(), 2)))
    return repo_id


# --------------------------------------------------------------------------- many repos


def build_many(hub_dir: Path, n: int = 500) -> None:
    """`n` small healthy MLX llama repos `mlx-community/many-llama-NNNN-4bit`."""
    files = {path: _to_bytes(value) for path, value in small_llama_files().items()}
    for i in range(n):
        make_cache_repo(hub_dir, f"mlx-community/many-llama-{i:04d}-4bit", files)
