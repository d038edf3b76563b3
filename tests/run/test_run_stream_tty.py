"""On a terminal, `mlxk run --audio` prints cues as each window is decoded, not at the end;
the streamed bytes are the same the whole-file render writes."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from tests.conftest import RealModels, run_cli
from tests.helpers.longspeech import RATE, long_speech

pytestmark = pytest.mark.slow


def _read_all(fd: int, proc: subprocess.Popen[bytes]) -> list[tuple[bytes, bool]]:
    """Every read from the terminal, with whether the process was still running then."""
    reads = []
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            reads.append((chunk, proc.poll() is None))
        elif proc.poll() is not None:
            break
    return reads


@pytest.mark.parametrize("fmt", ["srt", "text"])
def test_cues_stream_window_by_window_on_a_tty(
    real_models: RealModels, tmp_path: Path, fmt: str
) -> None:
    real_models.path("whisper-tiny.en")
    samples, _ref = long_speech(60.0)
    clip = tmp_path / "long.wav"
    sf.write(str(clip), samples, RATE)
    args = ["run", "whisper-tiny.en", "--audio", str(clip), "--format", fmt]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlxk", *args], stdout=slave, stderr=subprocess.PIPE,
        env=real_models.env,
    )  # fmt: skip
    os.close(slave)
    try:
        reads = _read_all(master, proc)
        proc.wait(600)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    streamed = b"".join(chunk for chunk, _ in reads).replace(b"\r\n", b"\n").decode()
    # text came in several reads, and some of it while the process was still decoding
    assert len(reads) >= 2 and reads[0][1]
    piped = run_cli(args, real_models.env)  # not a terminal: the whole render at the end
    assert piped.returncode == 0, piped.stderr
    assert streamed == piped.stdout
