"""Output that appears atomically: build in a temp dir beside the target, then rename.

An interrupted or failed import/convert/clone leaves nothing half-written at the target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlxk.config import Settings
from mlxk.errors import CacheSanctityError, TargetExistsError, ValidationError

# A hub clone downloads into <parent>/.mlxk_temp_<hash>, a private HF cache beside its target,
# kept across interruptions so the clone resumes; push never uploads such a directory.
TEMP_PREFIX = ".mlxk_temp_"


def target_path(settings: Settings, dst: str | None, default_name: str) -> Path:
    """A bare name goes into MLXK_WORKSPACE_HOME when set; paths are taken literally."""
    if dst is None:
        base = settings.workspace_home or Path.cwd()
        return (base / default_name).absolute()
    if "/" not in dst and dst not in (".", "..") and settings.workspace_home is not None:
        return (settings.workspace_home / dst).absolute()
    return Path(dst).expanduser().absolute()


def ensure_outside_cache(settings: Settings, path: Path, role: str) -> None:
    cache = settings.hf_home.expanduser().resolve()
    try:
        path.resolve().relative_to(cache)
    except ValueError:
        return
    raise CacheSanctityError(
        f"The {role} {path} is inside the HF cache ({cache}); mlxk never writes there. "
        "Use a workspace: mlxk clone <model> <dir>"
    )


def check_free_target(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TargetExistsError(f"Target {path} already exists and is not empty")


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temp dir next to ``target``; on success rename it into place."""
    check_free_target(target)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=parent))
    except OSError as exc:
        raise ValidationError(f"Cannot write to {parent}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        check_free_target(target)  # someone may have created it meanwhile
        if target.is_dir():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
