"""Facts about this machine for ``--version --json`` and ``run --verbose``."""

from __future__ import annotations

import os
from typing import Any

from mlxk.config import Settings


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def system_report(settings: Settings) -> dict[str, Any]:
    from mlxk.backends.platform import platform_report

    return {"memory_total_bytes": total_memory_bytes(), **platform_report()}
