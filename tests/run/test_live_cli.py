"""`ffmpeg -re … | mlxk run whisper-tiny.en --audio - --live`: words while ffmpeg still runs."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys

import pytest
from tests.conftest import RealModels
from tests.helpers.realmodels import SPEECH_DIR, normalise

pytestmark = pytest.mark.slow
CLIP = SPEECH_DIR / "having_returned_to_the_royal_cavern.wav"


def test_live_prints_words_while_the_audio_still_arrives(real_models: RealModels) -> None:
    real_models.path("whisper-tiny.en")
    ffmpeg_bin = shutil.which("ffmpeg")
    assert ffmpeg_bin, "the setup installs ffmpeg"
    ffmpeg = subprocess.Popen(
        [ffmpeg_bin, "-loglevel", "error", "-re", "-i", str(CLIP), "-f", "s16le", "-ar", "16000",
         "-ac", "1", "-"], stdout=subprocess.PIPE,
    )  # fmt: skip
    master, slave = pty.openpty()  # a terminal: partial text is shown as it comes
    mlxk = subprocess.Popen(
        [sys.executable, "-m", "mlxk", "run", "whisper-tiny.en", "--audio", "-", "--live"],
        stdin=ffmpeg.stdout, stdout=slave, stderr=subprocess.PIPE, env=real_models.env,
    )  # fmt: skip
    os.close(slave)
    assert ffmpeg.stdout is not None
    ffmpeg.stdout.close()
    seen, words_while_running = b"", False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
                if ffmpeg.poll() is None and "returned" in normalise(seen.decode(errors="replace")):
                    words_while_running = True
            elif mlxk.poll() is not None:
                break
        mlxk.wait(300)
    finally:
        os.close(master)
        for proc in (ffmpeg, mlxk):
            if proc.poll() is None:
                proc.kill()
    assert mlxk.returncode == 0, mlxk.stderr.read() if mlxk.stderr else ""
    assert words_while_running, seen[-500:]
    shown = seen.decode(errors="replace").replace("\x1b[K", "").replace("\r\n", "\n")
    final = [line for line in shown.split("\r") if line.strip()][-1]  # what is left on screen
    assert "royal cavern" in normalise(final)


def test_mic_without_an_input_device_says_what_is_missing(real_models: RealModels) -> None:
    from tests.conftest import run_cli

    real_models.path("whisper-tiny.en")
    res = run_cli(["run", "whisper-tiny.en", "--mic"], real_models.env)
    assert res.returncode == 1
    assert "--mic needs an input device" in res.stderr and "--audio - --live" in res.stderr
