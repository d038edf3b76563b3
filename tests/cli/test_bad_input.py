"""Junk in the cache, broken JSON, unreadable directories: one clear line, the right exit
code, no traceback, nothing changed on disk."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.helpers.hfcache import make_cache_repo, small_llama_files


def _fingerprint(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}|{st.st_mode}".encode())
    return h.hexdigest()


def _junk_cache(hub: Path) -> None:
    make_cache_repo(hub, "mlx-community/good-model-4bit", small_llama_files())
    (hub / "models--empty--repo").mkdir()
    (hub / "models--a--file-not-dir").write_text("junk")
    (hub / "version.txt").write_text("1")
    snap = make_cache_repo(hub, "org/broken-json", {**small_llama_files(), "config.json": "{nope"})
    assert snap.is_dir()
    weird = hub / "models--org--weird" / "snapshots"
    (weird / "not-a-commit").mkdir(parents=True)
    (weird / ("c" * 40) / "config.json").mkdir(parents=True)  # a directory named config.json
    refs = hub / "models--org--weird" / "refs"
    refs.mkdir()
    (refs / "main").write_bytes(b"\xff\xfe garbage")
    os.symlink("/nonexistent/target", hub / "models--org--dangling")
    snap2 = make_cache_repo(hub, "org/bad-readme", small_llama_files())
    (snap2 / "README.md").unlink()
    (snap2 / "README.md").write_bytes(b"---\n\xff\xfe\x00 bad utf8\n---\n")


COMMANDS = [
    ["list"], ["list", "--all", "--health", "--verbose"], ["list", "--json"], ["health"],
    ["health", "--json"], ["show", "broken-json"], ["show", "weird", "--json"],
    ["show", "good-model", "--files"], ["show", "org/dangling"], ["rm", "nothing-here"],
    ["show", "empty/repo", "--config"], ["list", "./does-not-exist"], ["show", ""],
]  # fmt: skip


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "empty")
def test_junk_never_crashes_and_changes_nothing(env: dict[str, str], args: list[str]) -> None:
    hub = Path(env["HF_HOME"]) / "hub"
    _junk_cache(hub)
    before = _fingerprint(hub)
    res = run_cli(args, env)
    assert "Traceback" not in res.stderr and "InternalError" not in res.stdout + res.stderr
    assert res.returncode in (0, 1), res.stderr
    if res.returncode == 1 and "--json" not in args:
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert _fingerprint(hub) == before


def test_broken_model_is_listed_as_unhealthy_with_reason(env: dict[str, str]) -> None:
    _junk_cache(Path(env["HF_HOME"]) / "hub")
    res = run_cli(["health", "broken-json"], env)
    assert res.returncode == 0 and "invalid JSON" in res.stdout


@pytest.fixture
def nobody_cache() -> Iterator[Path]:
    """A cache readable by an unprivileged user except for one unreadable model dir."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.fail("this test needs root and setpriv to drop privileges (util-linux)")
    root = Path(tempfile.mkdtemp(prefix="mlxk-perm-", dir="/tmp"))
    root.chmod(0o755)
    hub = root / "hub"
    make_cache_repo(hub, "mlx-community/good-model-4bit", small_llama_files())
    make_cache_repo(hub, "org/locked-model", small_llama_files())
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames:
            os.chmod(os.path.join(dirpath, n), 0o755)
        for n in filenames:
            os.chmod(os.path.join(dirpath, n), 0o644)
    (hub / "models--org--locked-model" / "snapshots").chmod(0o000)
    yield root
    (hub / "models--org--locked-model" / "snapshots").chmod(0o755)
    shutil.rmtree(root)


def test_permission_errors_are_reported_not_raised(nobody_cache: Path) -> None:
    env = {
        "HF_HOME": str(nobody_cache),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    for args in (["list", "--all", "--health"], ["show", "locked-model"], ["health"]):
        res = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-m", "mlxk", *args],
            env=env, capture_output=True, text=True, timeout=120, cwd="/tmp",
        )  # fmt: skip
        assert "Traceback" not in res.stderr, res.stderr
        assert res.returncode in (0, 1)
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "mlxk", "health", "locked-model"],
        env=env, capture_output=True, text=True, timeout=120, cwd="/tmp",
    )  # fmt: skip
    assert "unhealthy" in res.stdout or "Error" in res.stderr
