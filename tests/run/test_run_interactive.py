"""Terminal behaviour of `mlxk run` and `mlxk rm`: interactive chat, Ctrl-C, TTY prompts."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import RealModels, run_cli
from tests.helpers.hfcache import make_cache_repo, small_llama_files


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_interactive_chat_answers_each_turn(real_models: RealModels) -> None:
    real_models.path("smollm2")
    res = run_cli(
        ["run", "smollm2", "--temperature", "0", "--max-tokens", "20"], real_models.env,
        input="What is the capital of France?\nexit\n",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Assistant:" in res.stdout and "Paris" in res.stdout
    assert "Goodbye!" in res.stderr


def test_ctrl_c_stops_generation_and_keeps_the_output(real_models: RealModels) -> None:
    real_models.path("smollm2")
    master, slave = pty.openpty()  # stdout on a terminal: streaming mode
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlxk.cli.main", "run", "smollm2", "Tell me a very long story.",
         "--max-tokens", "2000", "--temperature", "0.8"],
        stdout=slave, stderr=subprocess.PIPE, env=real_models.env,
    )  # fmt: skip
    os.close(slave)
    try:
        first = _read_until(master, b" ", 240)
        assert first, "no streamed output before the timeout"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0
    assert b"[Generation interrupted by user]" in err and b"Traceback" not in err


def test_rm_fuzzy_match_asks_on_a_terminal(env: dict[str, str]) -> None:
    hub = Path(env["HF_HOME"]) / "hub"
    make_cache_repo(hub, "mlx-community/Fuzzy-Target-4bit", small_llama_files())
    repo = hub / "models--mlx-community--Fuzzy-Target-4bit"
    for answer, should_exist in ((b"n\n", True), (b"y\n", False)):
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlxk.cli.main", "rm", "fuzzy-target"],
            stdin=slave, stdout=slave, stderr=slave, env=env,
        )  # fmt: skip
        os.close(slave)
        prompt = _read_until(master, b"[y/N]", 60)
        assert b"Fuzzy-Target-4bit" in prompt
        os.write(master, answer)
        proc.wait(timeout=60)
        os.close(master)
        assert proc.returncode == 0
        assert repo.exists() is should_exist
