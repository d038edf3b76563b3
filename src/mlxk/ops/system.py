"""Facts about this machine for ``--version --json`` and ``run --verbose``."""

from __future__ import annotations

from typing import Any

from mlxk.config import Settings


def system_report(settings: Settings) -> dict[str, Any]:
    from mlxk.backends.memory import total_ram_bytes
    from mlxk.backends.platform import platform_report

    return {"memory_total_bytes": total_ram_bytes(), **platform_report()}
