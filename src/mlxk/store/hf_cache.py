"""The Hugging Face cache as huggingface_hub lays it out.

We scan the directory tree directly instead of calling ``huggingface_hub.scan_cache_dir``:
that function stats every blob and file of every revision, which makes ``mlxk list`` slow on
large caches (benchmarks/cli_startup.py measures the difference). The layout rules are
huggingface_hub's: ``models--org--name/{blobs,snapshots/<commit>,refs/<branch>}``.

An entry that cannot be read (a broken symlink, a file where a repo directory belongs, an
unreadable cache or ``refs/main``) is returned as a CacheWarning, never dropped silently:
``list`` and ``health`` show them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
REPO_PREFIX = "models--"
HIDDEN_MARKER = "TEST-CACHE-SENTINEL"


def repo_id_to_dirname(repo_id: str) -> str:
    return REPO_PREFIX + repo_id.replace("/", "--")


def dirname_to_repo_id(dirname: str) -> str:
    # Mechanical mapping; malformed names convert anyway so problems stay visible.
    return dirname[len(REPO_PREFIX) :].replace("--", "/")


@dataclass(frozen=True)
class CacheWarning:
    """A cache entry that could not be read as a model repo."""

    path: Path
    reason: str
    repo_id: str | None = None  # the repo the entry's name stands for, when it names one


def _why(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@dataclass(frozen=True)
class CacheRepo:
    repo_id: str
    repo_dir: Path

    def snapshots(self) -> list[str]:
        """Commit-named snapshot directories, newest first by mtime."""
        snap_dir = self.repo_dir / "snapshots"
        try:
            entries = [e for e in os.scandir(snap_dir) if COMMIT_RE.match(e.name) and e.is_dir()]
        except OSError:
            return []
        entries.sort(key=lambda e: _mtime(e.path), reverse=True)
        return [e.name for e in entries]

    def refs(self) -> dict[str, str]:
        """Branch (or tag) name → commit, read from ``refs/``."""
        refs_dir = self.repo_dir / "refs"
        found: dict[str, str] = {}
        if not refs_dir.is_dir():
            return found
        for path in refs_dir.rglob("*"):
            if not path.is_file():
                continue
            try:
                commit = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if COMMIT_RE.match(commit):
                found[path.relative_to(refs_dir).as_posix()] = commit
        return found

    def current_commit(self) -> str | None:
        """The snapshot ``refs/main`` names; the newest snapshot only when refs are missing."""
        return self.head()[0]

    def head(self) -> tuple[str | None, CacheWarning | None]:
        """``current_commit`` and, when a ``refs/main`` exists but was not used, why."""
        main, why = self._read_main()
        if main is not None and os.path.isdir(self.repo_dir / "snapshots" / main):
            return main, None
        snaps = self.snapshots()
        commit = snaps[0] if snaps else None
        if main is not None and commit is not None:
            why = f"refs/main names {main[:8]}, which has no snapshot; showing {commit[:8]}"
        warning = CacheWarning(self.repo_dir / "refs" / "main", why, self.repo_id) if why else None
        return commit, warning

    def _read_main(self) -> tuple[str | None, str | None]:
        """(the commit in refs/main, or None; why it could not be read, None when absent)."""
        try:
            with open(self.repo_dir / "refs" / "main", encoding="utf-8") as fh:
                main = fh.read().strip()
        except FileNotFoundError:
            return None, None  # legitimate: pulled by commit only, or refs were never written
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"refs/main unreadable ({_why(exc)})"
        if not COMMIT_RE.match(main):
            return None, f"refs/main holds no commit id ({main[:40]!r})"
        return main, None

    def snapshot_path(self, commit: str) -> Path:
        return self.repo_dir / "snapshots" / commit


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@dataclass(frozen=True)
class CacheScan:
    repos: list[CacheRepo]  # sorted by repo id
    warnings: list[CacheWarning]


def scan_repos(hub_dir: Path) -> CacheScan:
    """Every model repo directory in the cache, and a warning for each unreadable entry.

    Other names (datasets--, .locks, our test marker) are not models and are skipped quietly.
    """
    try:
        entries = list(os.scandir(hub_dir))
    except FileNotFoundError:
        return CacheScan([], [])  # no cache yet
    except OSError as exc:
        return CacheScan([], [CacheWarning(hub_dir, f"cannot list the cache ({_why(exc)})")])
    repos, warnings = [], []
    for entry in entries:
        if not entry.name.startswith(REPO_PREFIX) or HIDDEN_MARKER in entry.name:
            continue
        repo_id, path = dirname_to_repo_id(entry.name), Path(entry.path)
        problem = _not_a_repo_dir(entry)
        if problem is None:
            repos.append(CacheRepo(repo_id, path))
        else:
            warnings.append(CacheWarning(path, problem, repo_id))
    repos.sort(key=lambda r: r.repo_id.lower())
    return CacheScan(repos, sorted(warnings, key=lambda w: str(w.path)))


def _not_a_repo_dir(entry: os.DirEntry[str]) -> str | None:
    try:
        if entry.is_dir():
            return None
        if entry.is_symlink():
            target = os.readlink(entry.path)
            gone = not os.path.exists(entry.path)
            return f"broken symlink to {target}" if gone else f"symlink to a file ({target})"
        return "not a directory"
    except OSError as exc:
        return f"unreadable ({_why(exc)})"


def iter_repos(hub_dir: Path) -> Iterator[CacheRepo]:
    """Every model repo directory in the cache, sorted by repo id (see scan_repos)."""
    yield from scan_repos(hub_dir).repos


def find_repo(hub_dir: Path, repo_id: str) -> CacheRepo | None:
    repo_dir = hub_dir / repo_id_to_dirname(repo_id)
    return CacheRepo(repo_id, repo_dir) if repo_dir.is_dir() else None


def lock_files(hub_dir: Path, repo_id: str) -> list[Path]:
    lock_dir = hub_dir / ".locks" / repo_id_to_dirname(repo_id)
    if not lock_dir.is_dir():
        return []
    return sorted(p for p in lock_dir.rglob("*.lock") if p.is_file())


def held_locks(hub_dir: Path, repo_id: str) -> list[Path]:
    """Lock files some process holds right now (a download in progress).

    huggingface_hub never deletes its lock files, so their presence means nothing; whether
    one is held is asked with a non-blocking flock, the lock filelock itself takes.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): presence is all we can see
        return lock_files(hub_dir, repo_id)
    held = []
    for path in lock_files(hub_dir, repo_id):
        try:
            with open(path, "a") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        except BlockingIOError:
            held.append(path)
        except OSError:
            continue
    return held
