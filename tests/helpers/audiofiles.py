"""Generate audio files (ordinary and odd) for tests, at test time: nothing binary is committed.

Tools that may be missing (espeak-ng, sox, ffmpeg) are looked up on PATH; tests should skip with
``requires("ffmpeg")`` when they are absent.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def requires(*tools: str) -> pytest.MarkDecorator:
    """Skip a test unless every command-line tool named is on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} on PATH")


def tone(
    freq: float, rate: int, seconds: float, channels: int = 1, amplitude: float = 0.5
) -> np.ndarray:
    """A sine of ``freq`` Hz, shape (frames, channels); channel k is scaled by 1/(k+1) so a
    wrong channel order or a lost channel changes the downmix."""
    t = np.arange(round(rate * seconds)) / rate
    mono = amplitude * np.sin(2 * np.pi * freq * t)
    gains = 1.0 / np.arange(1, channels + 1)
    return (mono[:, None] * gains[None, :]).astype(np.float64)


def make_tone_wav(
    path: Path,
    freq: float = 440.0,
    rate: int = 16000,
    seconds: float = 1.0,
    subtype: str = "PCM_16",
    channels: int = 1,
    *,
    extensible: bool = False,
) -> Path:
    """A WAV holding a tone. ``subtype`` is a soundfile subtype (PCM_U8, PCM_16, PCM_24, PCM_32,
    FLOAT, DOUBLE, ULAW, ALAW, …); ``extensible`` writes WAVE_FORMAT_EXTENSIBLE (tag 0xFFFE)."""
    sf.write(
        path,
        tone(freq, rate, seconds, channels),
        rate,
        subtype=subtype,
        format="WAVEX" if extensible else "WAV",
    )
    return path


def wav_format_tag(path: Path) -> int:
    """The wFormatTag of a canonical WAV (fmt chunk first): 1 PCM, 3 float, 0xFFFE extensible."""
    head = Path(path).read_bytes()[:24]
    assert head[12:16] == b"fmt ", "fmt chunk is not first"
    return int(struct.unpack_from("<H", head, 20)[0])


def make_fake_header_wav(
    path: Path,
    claimed_bytes: int = 0xFFFFFFF0,
    *,
    rate: int = 16000,
    real_seconds: float = 0.25,
    freq: float = 1000.0,
) -> Path:
    """A 44-byte 16-bit mono PCM header whose RIFF and data sizes claim ``claimed_bytes`` of
    audio, followed by only ``real_seconds`` of a real tone."""
    pcm = (tone(freq, rate, real_seconds)[:, 0] * 32767).astype("<i2").tobytes()
    riff_size = min(claimed_bytes + 36, 0xFFFFFFFF)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        claimed_bytes,
    )
    Path(path).write_bytes(header + pcm)
    return path


def espeak_wav(path: Path, text: str = "The quick brown fox jumps over the lazy dog.") -> Path:
    """Synthesised speech (espeak-ng writes 22.05 kHz mono 16-bit WAV)."""
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def ffmpeg_convert(src: Path, dst: Path, *args: str) -> Path:
    """Transcode with ffmpeg; ``args`` are output options (codec, rate, channels, …)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(src), *args, str(dst)],
        check=True,
        capture_output=True,
    )
    return dst


def sox_convert(
    src: Path, dst: Path, *effects: str, rate: int | None = None, channels: int | None = None
) -> Path:
    """Transcode with sox, optionally changing rate and channel count."""
    out_opts = [*(["-r", str(rate)] if rate else []), *(["-c", str(channels)] if channels else [])]
    subprocess.run(
        ["sox", str(src), *out_opts, str(dst), *effects], check=True, capture_output=True
    )
    return dst


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """Frequency of the strongest FFT bin (Hann window), in Hz."""
    x = np.asarray(samples, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))
