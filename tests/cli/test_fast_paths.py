"""`mlxk --help` and `mlxk list` over a 500-model cache import no engine (speed is benchmarked
in benchmarks/cli_startup.py, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.hfcache import build_many

HEAVY = ("mlx_lm", "mlx_vlm", "mlx_audio", "transformers", "mlx", "torch")
PROBE = """
import sys
from mlxk.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # argparse's --help exits
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')
raise SystemExit(code)
"""


@pytest.fixture(scope="module")
def big_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hf_home = tmp_path_factory.mktemp("many")
    build_many(hf_home / "hub", 500)
    return hf_home


def _imports(args: list[str], hf_home: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    code = PROBE.format(heavy=set(HEAVY))
    res = subprocess.run(
        [sys.executable, "-c", code, *args], env={"HF_HOME": str(hf_home), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("HEAVY="))
    return res, [m for m in line[6:].split(",") if m]


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--json"], ["--version"]])
def test_no_engine_is_imported(big_cache: Path, args: list[str]) -> None:
    res, heavy = _imports(args, big_cache)
    assert res.returncode == 0, res.stderr
    assert heavy == []


def test_list_sees_all_500(big_cache: Path) -> None:
    res, _ = _imports(["list", "--json"], big_cache)
    assert json.loads(res.stdout)["data"]["count"] == 500
