"""What the installed MLX engines know, asked without importing them.

Importing mlx-lm / mlx-vlm / mlx-audio costs about a second each and pulls in MLX, so the
probe reads their package layout instead: each registers a model type as a module or package
named after it (mlx-lm ``models/<type>.py``, mlx-vlm ``models/<type>/``, mlx-audio
``stt/models/<type>/``), plus a ``MODEL_REMAPPING`` dict literal read with ``ast``.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from mlxk.types import Backend

_LAYOUT = {
    Backend.MLX_LM: ("mlx_lm", "models", "utils.py"),
    Backend.MLX_VLM: ("mlx_vlm", "models", "utils.py"),
    Backend.MLX_AUDIO: ("mlx_audio", "stt/models", "stt/utils.py"),
}


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _remapping(path: Path) -> dict[str, str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "MODEL_REMAPPING" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
    return {}


@functools.cache
def engine_registry(engine: Backend) -> tuple[frozenset[str], dict[str, str]] | None:
    """(model types, remapping) of an installed engine, or None when it is not installed."""
    if engine not in _LAYOUT:
        return None
    pkg, models_rel, remap_file = _LAYOUT[engine]
    root = _package_dir(pkg)
    if root is None:
        return None
    models_dir = root / models_rel
    try:
        names = {
            p.stem if p.suffix == ".py" else p.name
            for p in models_dir.iterdir()
            if not p.name.startswith("_") and (p.suffix == ".py" or p.is_dir())
        }
    except OSError:
        return None
    remap = _remapping(root / remap_file) if remap_file else {}
    return frozenset(n.replace("-", "_") for n in names), remap


def engine_installed(engine: Backend) -> bool:
    return engine_registry(engine) is not None


def engine_knows(engine: Backend, model_type: str | None) -> bool:
    if not model_type:
        return False
    reg = engine_registry(engine)
    if reg is None:
        return False
    types, remap = reg
    mt = model_type.lower()
    mt = remap.get(mt, mt).replace("-", "_")
    return mt in types
