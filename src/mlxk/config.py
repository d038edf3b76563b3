"""Settings: the only place that reads environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _env_path(env: Mapping[str, str], key: str) -> Path | None:
    value = env.get(key, "").strip()
    return Path(value).expanduser() if value else None


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    hf_home: Path
    workspace_home: Path | None
    hf_token: str | None
    hf_endpoint: str | None
    offline: bool
    max_audio_bytes: int
    max_audio_seconds: int
    max_image_bytes: int
    blas_path: str | None  # MLXK_BLAS: explicit BLAS library, or "none" to skip
    memory_limit_bytes: int | None  # MLXK_MEMORY_LIMIT: override the detected budget
    is_ci: bool
    debug: bool = False

    @property
    def hub_dir(self) -> Path:
        return self.hf_home / "hub"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        hf_home = _env_path(env, "HF_HOME") or Path("~/.cache/huggingface").expanduser()
        limit = _env_int(env, "MLXK_MEMORY_LIMIT", 0)
        return cls(
            hf_home=hf_home,
            workspace_home=_env_path(env, "MLXK_WORKSPACE_HOME"),
            hf_token=env.get("HF_TOKEN") or env.get("HUGGINGFACE_HUB_TOKEN") or None,
            hf_endpoint=env.get("HF_ENDPOINT") or None,
            offline=env.get("HF_HUB_OFFLINE", "") in ("1", "true", "TRUE", "yes"),
            max_audio_bytes=_env_int(env, "MLXK_MAX_AUDIO_BYTES", 50 * 1024 * 1024),
            max_audio_seconds=_env_int(env, "MLXK_MAX_AUDIO_SECONDS", 4 * 3600),
            max_image_bytes=_env_int(env, "MLXK_MAX_IMAGE_BYTES", 20 * 1024 * 1024),
            blas_path=env.get("MLXK_BLAS") or None,
            memory_limit_bytes=limit or None,
            is_ci=bool(env.get("CI")),
            debug=env.get("MLXK_DEBUG", "") not in ("", "0"),
        )


def apply_library_defaults() -> None:
    """Settings for libraries mlxk loads, set before they are imported; a user's own wins.

    transformers (imported by every engine) prints "PyTorch was not found …" advice at import
    time; mlxk never needs torch, so that line is only noise.
    """
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
