"""A long-lived engine in a child process, spoken to in JSON lines.

Anchors run in processes of their own so each engine keeps its own libraries and threads
(CTranslate2's OpenMP pool next to OpenBLAS in one process would disturb both); the parent
sends one request at a time, so engines never run at the same moment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any

from mlxk.errors import MlxkError


class WorkerError(MlxkError):
    type = "bench_worker_error"


class Worker:
    def __init__(self, module: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = module
        # a file, not a pipe: a chatty worker must never block on a full stderr pipe
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env,
        )  # fmt: skip
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.stderr.seek(0)
            tail = "\n".join(self.stderr.read().strip().splitlines()[-8:])
            raise WorkerError(f"{self.name} exited (code {code}): {tail}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"{self.name}: {reply['error']}")
        return reply

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reply(obj: dict[str, Any]) -> None:
    """Worker side: one JSON line out, flushed."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
