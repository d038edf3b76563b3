"""The probe: what a model is, read once from its own files (never the network, never mlx)."""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxk.store.engines import engine_knows
from mlxk.store.safetensors_header import SafetensorsHeaderError, read_header
from mlxk.types import CAPABILITY_ORDER, Backend, Framework, LocalModel, ModelInfo

VISION_TYPES = {
    "llava", "llava_next", "pixtral", "qwen2_vl", "qwen2_5_vl", "phi3_v", "mllama",
    "paligemma", "idefics", "idefics2", "idefics3", "smolvlm",
}  # fmt: skip
AUDIO_TYPE_MARKERS = ("gemma3n", "voxtral", "whisper", "vibevoice", "audio")
SPEECH_NAME_RE = re.compile(r"whisper|voxtral|vibevoice", re.I)
NO_TRANSLATE_RE = re.compile(r"whisper-(tiny|base|small|medium)\.en|\.en\b|turbo", re.I)
VIDEO_FILES = {"video_preprocessor_config.json"}
IMAGE_PROC_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "image_processor_config.json",
)
CONTEXT_KEYS = (
    "max_position_embeddings", "max_sequence_length", "seq_length", "n_positions",
    "max_target_positions", "n_ctx",
)  # fmt: skip


@dataclass(frozen=True)
class FileStat:
    size: int  # of the target for symlinks; -1 when it does not exist
    link: str | None  # raw symlink target, None for regular files


@dataclass
class ModelFiles:
    """The handful of files the probe reads, each read at most once."""

    root: Path
    names: list[str] = field(default_factory=list)  # relative posix paths
    config: dict[str, Any] | None = None
    config_error: str | None = None
    _stats: dict[str, FileStat] | None = None
    thorough: bool = False  # health: parse large files fully
    _json: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _names: set[str] | None = None

    @property
    def stats(self) -> dict[str, FileStat]:
        """One lstat (and a stat for links) per file, shared by health, size and listing."""
        if self._stats is None:
            root = str(self.root)
            self._stats = {n: _file_stat(os.path.join(root, n)) for n in self.names}
        return self._stats

    @property
    def total_size(self) -> int:
        return sum(max(st.size, 0) for st in self.stats.values())

    @classmethod
    def read(cls, root: Path) -> ModelFiles:
        files = cls(root)
        files.names = _list_files(root)
        files.config, files.config_error = read_json_file(root / "config.json")
        return files

    def json(self, name: str) -> dict[str, Any] | None:
        if not self.has(name):
            return None
        if name not in self._json:
            self._json[name] = read_json_file(self.root / name)[0]
        return self._json[name]

    def has(self, name: str) -> bool:
        return name in self._name_set

    @property
    def _name_set(self) -> set[str]:
        if self._names is None:
            self._names = set(self.names)
        return self._names

    def with_suffix(self, *suffixes: str) -> list[str]:
        return [n for n in self.names if n.endswith(suffixes)]


def _file_stat(path: str) -> FileStat:
    try:
        st = os.lstat(path)
    except OSError:
        return FileStat(-1, None)
    if not stat.S_ISLNK(st.st_mode):
        return FileStat(st.st_size, None)
    link = os.readlink(path)
    try:
        return FileStat(os.stat(path).st_size, link)
    except OSError:
        return FileStat(-1, link)


def _list_files(root: Path, limit: int = 5000) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out.extend(prefix + f for f in filenames)
        if len(out) > limit:
            break
    return sorted(out)


def read_json_file(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(dict, None) or (None, reason) — never raises."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "config.json missing" if path.name == "config.json" else f"{path.name} missing"
    except OSError as exc:
        return None, f"{path.name} unreadable: {exc.strerror or exc}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, f"{path.name} contains invalid JSON"
    if not isinstance(data, dict) or not data:
        return None, f"{path.name} is empty or invalid"
    return data, None


def readme_front_matter(root: Path) -> str:
    try:
        text = (root / "README.md").read_text(encoding="utf-8", errors="replace")[:8192]
    except OSError:
        return ""
    if not text.startswith("---"):
        return ""
    end = text.find("\n---", 3)
    return text[3:end] if end > 0 else ""


def detect_framework(model: LocalModel, files: ModelFiles) -> Framework:
    cfg = files.config or {}
    if _is_ct2(files):
        return Framework.CTRANSLATE2
    if model.name.startswith("mlx-community/") or "quantization" in cfg or _mlx_marked(files):
        return Framework.MLX
    if files.with_suffix(".gguf"):
        return Framework.GGUF
    if files.with_suffix(".safetensors") or any(
        n.split("/")[-1].startswith("pytorch_model") and n.endswith(".bin") for n in files.names
    ):
        return Framework.PYTORCH
    return Framework.UNKNOWN


def _is_ct2(files: ModelFiles) -> bool:
    has_bin = any(n.split("/")[-1].startswith("model.bin") for n in files.names)
    cfg = files.config or {}
    return has_bin and "model_type" not in cfg and not files.with_suffix(".safetensors")


def _mlx_marked(files: ModelFiles) -> bool:
    sentinel = files.json(".mlxk_workspace.json") or {}
    if sentinel.get("operation") in ("import", "convert"):
        return True  # mlxk wrote these weights for MLX
    meta = readme_front_matter(files.root)
    if re.search(r"library_name:\s*mlx\b", meta) or re.search(r"^\s*-\s*mlx\s*$", meta, re.M):
        return True
    # MLX writes {"format": "mlx"} into safetensors metadata; unquantized MLX conversions
    # outside mlx-community were reported as PyTorch by mlx-knife without this check.
    shards = files.with_suffix(".safetensors")
    if not shards:
        return False
    try:
        header = read_header(files.root / shards[0])
    except (SafetensorsHeaderError, OSError):
        return False
    meta_block = header.get("__metadata__")
    return isinstance(meta_block, dict) and meta_block.get("format") == "mlx"


def classify_embedder(cfg: dict[str, Any], name: str) -> str | None:
    mt = str(cfg.get("model_type", "")).lower()
    archs = " ".join(str(a) for a in cfg.get("architectures") or [])
    low = name.lower()
    causal = "ForCausalLM" in archs or mt in ("qwen3", "mistral")
    if causal and ("embed" in low or "qwen3-embedding" in low):
        return "decoder"
    if mt == "bert":
        return "encoder"
    if mt in ("xlm-roberta", "xlm_roberta", "modernbert", "nomic_bert"):
        return "encoder_declared"
    return None


def has_chat_template(files: ModelFiles) -> bool:
    tok_cfg = files.json("tokenizer_config.json") or {}
    if tok_cfg.get("chat_template"):
        return True
    if files.has("chat_template.json") or files.has("chat_template.jinja"):
        return True
    if files.has("tokenizer.json"):
        try:
            with (files.root / "tokenizer.json").open("rb") as fh:
                return b'"chat_template"' in fh.read()
        except OSError:
            return False
    return False


def _nonempty_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


def _blocks(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The config and its nested model configs (omni models keep towers in thinker_config)."""
    nested = cfg.get("thinker_config")
    return [cfg, nested] if isinstance(nested, dict) else [cfg]


def _has_tower(cfg: dict[str, Any], key: str) -> bool:
    return any(_nonempty_dict(b.get(key)) for b in _blocks(cfg))


def _is_vision(cfg: dict[str, Any], files: ModelFiles) -> bool:
    if any(files.has(v) for v in VIDEO_FILES) and not _has_tower(cfg, "vision_config"):
        return False
    if _has_tower(cfg, "vision_config") or str(cfg.get("model_type")) in VISION_TYPES:
        return True
    if "image_processor" in cfg:
        return True
    for name in IMAGE_PROC_FILES:
        data = files.json(name)
        if data is None:
            continue
        if "video" in str(data.get("processor_class", "")).lower() or "temporal_patch_size" in data:
            continue
        if "whisper" in str(data.get("feature_extractor_type", "")).lower():
            continue  # a speech feature extractor, not an image processor
        return True
    return False


def _feature_extractor(files: ModelFiles) -> str:
    data = files.json("preprocessor_config.json") or {}
    return str(data.get("feature_extractor_type", ""))


def _is_audio(cfg: dict[str, Any], files: ModelFiles, name: str) -> bool:
    mt = str(cfg.get("model_type", "")).lower()
    if _has_tower(cfg, "audio_config") or any(m in mt for m in AUDIO_TYPE_MARKERS):
        return True
    if "whisper" in _feature_extractor(files).lower():
        return True
    return bool(_is_ct2(files) and SPEECH_NAME_RE.search(name))


def seed_audio_route(cfg: dict[str, Any], files: ModelFiles, name: str) -> Backend | None:
    """The seed's config-based routing rule (mlx-knife ADR-020), in its order."""
    mt = str(cfg.get("model_type", "")).lower()
    if mt == "voxtral":
        return Backend.MLX_AUDIO
    if "audio_config" in cfg and _nonempty_dict(cfg.get("vision_config")):
        return Backend.MLX_VLM
    if "whisper" in mt or "vibevoice" in mt:
        return Backend.MLX_AUDIO
    if "WhisperFeatureExtractor" in _feature_extractor(files):
        return Backend.MLX_AUDIO
    if SPEECH_NAME_RE.search(name):
        return Backend.MLX_AUDIO
    if "audio_config" in cfg:
        return Backend.MLX_VLM
    return None


def audio_route(cfg: dict[str, Any], files: ModelFiles, name: str) -> Backend | None:
    """When exactly one installed engine knows the model_type it wins; else the seed's rule."""
    seed = seed_audio_route(cfg, files, name)
    if seed is None:
        return None
    mt = cfg.get("model_type")
    knowers = [b for b in (Backend.MLX_AUDIO, Backend.MLX_VLM) if engine_knows(b, mt)]
    return knowers[0] if len(knowers) == 1 else seed


def _translate_capable(cfg: dict[str, Any], name: str) -> bool:
    if str(cfg.get("model_type", "")).lower() != "whisper":
        return False
    if cfg.get("vocab_size") == 51864:  # English-only Whisper vocabularies
        return False
    if cfg.get("encoder_layers") == 32 and cfg.get("decoder_layers") == 4:
        return False  # large-v3-turbo's shape: tuned for transcription only
    return not NO_TRANSLATE_RE.search(name.split("/")[-1])


def model_type_of(cfg: dict[str, Any], files: ModelFiles, name: str, embedder: str | None) -> str:
    mt = str(cfg.get("model_type", "")).lower()
    if embedder:
        return "embedding"
    if mt == "chat" or mt in VISION_TYPES:
        return "chat"
    if any(m in mt for m in ("whisper", "vibevoice", "voxtral")):
        return "audio"
    if not mt and _is_audio(cfg, files, name):
        return "audio"
    if has_chat_template(files):
        return "chat"
    low = name.lower()
    return "chat" if ("instruct" in low or "chat" in low) else "base"


def context_length(cfg: dict[str, Any]) -> int | None:
    thinker = cfg.get("thinker_config") or {}
    nested = thinker.get("text_config") if isinstance(thinker, dict) else None
    for block in (cfg, cfg.get("text_config") or {}, nested or {}):
        if not isinstance(block, dict):
            continue
        for key in CONTEXT_KEYS:
            value = block.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def quantization_of(cfg: dict[str, Any]) -> dict[str, int] | None:
    q = cfg.get("quantization") or cfg.get("quantization_config")
    if not isinstance(q, dict):
        return None
    out = {k: q[k] for k in ("bits", "group_size") if isinstance(q.get(k), int)}
    return out or None


def probe(model: LocalModel, files: ModelFiles | None = None) -> ModelInfo:
    files = files or ModelFiles.read(model.path)
    cfg = files.config or {}
    name = model.name if model.cached else (model.display_name or model.path.name)
    embedder = classify_embedder(cfg, name)
    mtype = model_type_of(cfg, files, name, embedder)
    caps = _capabilities(cfg, files, name, mtype)
    backend = audio_route(cfg, files, name) if "audio" in caps else None
    archs = cfg.get("architectures")
    return ModelInfo(
        framework=detect_framework(model, files),
        model_type=mtype,
        capabilities=caps,
        config_model_type=str(cfg["model_type"]) if cfg.get("model_type") else None,
        architecture=str(archs[0]) if isinstance(archs, list) and archs else None,
        audio_backend=backend,
        context_length=context_length(cfg),
        quantization=quantization_of(cfg),
        embedder=embedder,
    )


def _capabilities(cfg: dict[str, Any], files: ModelFiles, name: str, mtype: str) -> tuple[str, ...]:
    caps: set[str] = set()
    if mtype == "embedding":
        caps.add("embeddings")
    elif mtype == "audio":
        caps.add("audio")
        if _translate_capable(cfg, name):
            caps.add("audio-translate-en")
    else:
        caps.add("text-generation")
        if mtype == "chat":
            caps.add("chat")
        if _is_vision(cfg, files):
            caps.add("vision")
        if _is_audio(cfg, files, name):
            caps.add("audio")
        if _declares_tools(files):
            caps.add("tools")
    return tuple(c for c in CAPABILITY_ORDER if c in caps)


def _declares_tools(files: ModelFiles) -> bool:
    template = (files.json("tokenizer_config.json") or {}).get("chat_template")
    if isinstance(template, list):
        template = " ".join(str(t.get("template", "")) for t in template if isinstance(t, dict))
    return isinstance(template, str) and "tools" in template
