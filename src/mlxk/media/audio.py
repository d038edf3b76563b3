"""Audio input for the run engine and the server.

Everything arrives as a path, raw bytes or a binary stream and leaves as one float32 mono clip at
the model's sample rate. The container is sniffed from its first bytes, never from a name.

* WAV is parsed here, block by block, so a header that lies about its size cannot make us
  allocate what it claims: we only ever hold what was really decoded.
* MP3 and FLAC go through miniaudio (dr_mp3, dr_flac: in-process, quiet); AIFF through
  libsndfile.
* Containers that need a real demuxer (OGG/Vorbis, Opus, M4A/AAC, WebM, …) go through an
  ``ffmpeg`` subprocess whose output is a streamed float WAV, parsed by the same WAV code.

Limits are enforced while reading (bytes) and while decoding (seconds), so an oversized input
fails early instead of after it has been fully decoded. Resampling is soxr "HQ" (a steep
low-pass: stop-band well below -100 dB), streamed block by block next to the decoder, so memory
grows with the decoded duration at the *target* rate and nothing else.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, BinaryIO, Union

import miniaudio
import numpy as np
import soundfile
import soxr

from mlxk.errors import MediaError, MediaTooLargeError

log = logging.getLogger(__name__)

AudioSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_SECONDS = 4 * 3600.0
SUPPORTED = "WAV, MP3, FLAC, AIFF; with ffmpeg also OGG/Vorbis, Opus, M4A/AAC, WebM"

_READ_CHUNK = 1 << 20  # bytes per read: bounds every transient buffer
_SNIFF_BYTES = 8192  # a small ID3 tag, the first Ogg page, two ADTS frames
_MIN_RATE, _MAX_RATE = 1000, 768_000
_MAX_CHANNELS = 64

# Formats that need ffmpeg: the name users know, and the demuxer we force (no probing into
# playlist/concat demuxers for something we already identified).
_FFMPEG_FORMATS: dict[str, tuple[str, str]] = {
    "ogg": ("OGG", "ogg"),
    "opus": ("Opus", "ogg"),
    "m4a": ("M4A/AAC", "mov"),
    "aac": ("AAC (ADTS)", "aac"),
    "webm": ("WebM/Matroska", "matroska"),
    "caf": ("CAF", "caf"),
    "amr": ("AMR", "amr"),
    "wma": ("WMA/ASF", "asf"),
}

# Non-audio files people upload by mistake; named in the error so the cause is obvious.
_NOT_AUDIO: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
)


@dataclass(frozen=True)
class AudioClip:
    samples: np.ndarray = field(repr=False)  # float32 mono in [-1, 1]
    sample_rate: int
    duration: float  # seconds, len(samples) / sample_rate
    source_format: str  # "wav", "mp3", "flac", "ogg", "opus", "m4a", …
    channels_in: int
    rate_in: int


# --------------------------------------------------------------------------------------------
# Sniffing


def sniff_format(head: bytes) -> str | None:
    """Name the audio container from its first bytes (pass 8 KiB when there are that many)."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "opus" if b"OpusHead" in head[:128] else "ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"caff":
        return "caf"
    if head[:5] == b"#!AMR":
        return "amr"
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "wma"
    if head[:3] == b"ID3":
        return _sniff_after_id3(head)
    return _sniff_mpeg_frame(head)


def _sniff_after_id3(head: bytes) -> str:
    """An ID3v2 tag usually precedes MP3, sometimes AAC or FLAC: look past it when we can."""
    if len(head) < 10:
        return "mp3"
    size = _id3_size(head)
    inner = sniff_format(head[size:]) if size < len(head) - 4 else None
    return inner or "mp3"


def _id3_size(head: bytes) -> int:
    """Bytes taken by the ID3v2 tag that starts ``head`` (a 'syncsafe' 28-bit size)."""
    size = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9])
    return size + (10 if head[5] & 0x10 else 0)  # footer present


def _sniff_mpeg_frame(head: bytes) -> str | None:
    """A bare MPEG audio frame (MP1/2/3) or an AAC ADTS header at the very start."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    adts = (head[1] >> 1) & 3 == 0
    length = _adts_frame_length(head) if adts else _mpeg_frame_length(head)
    if length is None:
        return None
    # A sync word is 11-12 bits, easily hit by chance: also require the next frame's header.
    if len(head) >= length + 2 and (head[length] != 0xFF or head[length + 1] & 0xE0 != 0xE0):
        return None
    return "aac" if adts else "mp3"


def _adts_frame_length(head: bytes) -> int | None:
    if len(head) < 7 or head[1] & 0xF6 != 0xF0 or (head[2] >> 2) & 0xF > 12:
        return None
    length = (head[3] & 3) << 11 | head[4] << 3 | head[5] >> 5
    return length if length >= 7 else None


_MPEG_KBPS = {  # (MPEG-1?, layer) -> bitrate table in kbit/s, index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame_length(head: bytes) -> int | None:
    """Byte length of the MPEG audio frame whose header starts ``head``; None if reserved."""
    version, layer = (head[1] >> 3) & 3, 4 - ((head[1] >> 1) & 3)  # layer 1, 2 or 3
    bitrate_index, rate_index, padding = head[2] >> 4, (head[2] >> 2) & 3, (head[2] >> 1) & 1
    if version == 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved or free-format: not worth guessing
    mpeg1 = version == 3
    table = _MPEG_KBPS[(mpeg1, 2 if not mpeg1 and layer == 3 else layer)]
    bitrate, rate = table[bitrate_index - 1] * 1000, _MPEG_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    per_frame = 144 if layer == 2 or mpeg1 else 72
    return per_frame * bitrate // rate + padding


def _describe_unknown(head: bytes) -> str:
    if not head:
        return "the input is empty"
    if head[:4] == b"RIFF" and len(head) < 12:
        return "the WAV header is truncated"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "it looks like a WebP image"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "it looks like an AVI video"
    for magic, what in _NOT_AUDIO:
        if head.startswith(magic):
            return f"it looks like {what}"
    if _looks_like_text(head):
        return "it looks like text, not audio"
    return "its first bytes match no known audio format"


def _looks_like_text(head: bytes) -> bool:
    sample = head[:512]
    if b"\x00" in sample:
        return False
    texty = sum(1 for b in sample if b >= 0x20 or b in (9, 10, 13))
    return texty >= 0.95 * len(sample)


# --------------------------------------------------------------------------------------------
# Input with a byte limit


class _LimitedReader:
    """Forward-only reader over a binary stream that refuses to read past ``max_bytes``."""

    def __init__(self, raw: IO[bytes], max_bytes: int | None, label: str) -> None:
        self._raw = raw
        self._max = max_bytes
        self._label = label
        self._buf = b""
        self.consumed = 0  # bytes taken from the raw stream so far

    def _raw_read(self, n: int) -> bytes:
        if self._max is not None:
            n = min(n, self._max - self.consumed + 1)  # one byte over is enough to know
        data = self._raw.read(n) or b""
        self.consumed += len(data)
        if self._max is not None and self.consumed > self._max:
            raise _too_many_bytes(self._label, self._max)
        return data

    def peek(self, n: int) -> bytes:
        while len(self._buf) < n:
            more = self._raw_read(n - len(self._buf))
            if not more:
                break
            self._buf += more
        return self._buf[:n]

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the input."""
        parts = [self._buf[:n]]
        self._buf = self._buf[n:]
        got = len(parts[0])
        while got < n:
            more = self._raw_read(min(n - got, _READ_CHUNK))
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def skip(self, n: int) -> int:
        skipped = 0
        while skipped < n:
            got = len(self.read(min(n - skipped, _READ_CHUNK)))
            if not got:
                break
            skipped += got
        return skipped

    def read_all(self) -> bytes:
        parts = []
        while chunk := self.read(_READ_CHUNK):
            parts.append(chunk)
        return b"".join(parts)


@dataclass
class _Input:
    reader: _LimitedReader
    path: Path | None  # a regular file libraries may open by name (its size already checked)
    label: str  # how errors name the input
    close: Callable[[], None]


def _open_input(source: AudioSource, max_bytes: int, name: str | None) -> _Input:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "audio input"
        if len(data) > max_bytes:
            raise _too_many_bytes(label, max_bytes)
        return _Input(_LimitedReader(io.BytesIO(data), max_bytes, label), None, label, _noop)
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), max_bytes, name)
    if hasattr(source, "read"):
        label = name or _stream_name(source) or "audio stream"
        return _Input(_LimitedReader(source, max_bytes, label), None, label, _noop)
    raise TypeError(f"audio source must be a path, bytes or a binary stream, not {type(source)}")


def _open_path(path: Path, max_bytes: int, name: str | None) -> _Input:
    label = name or _short(path.name or str(path))
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise MediaError(f"{label}: is a directory, not an audio file")
        # A regular file's size is known: refuse it before reading a byte.
        if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
            raise _too_many_bytes(label, max_bytes, st.st_size)
        fh = path.open("rb")
    except FileNotFoundError:
        raise MediaError(f"{label}: audio file not found ({_short(str(path), 200)})") from None
    except OSError as exc:
        raise MediaError(f"{label}: cannot open audio file ({exc.strerror or exc})") from None
    regular = path if stat.S_ISREG(st.st_mode) else None  # FIFOs and devices: read only once
    return _Input(_LimitedReader(fh, max_bytes, label), regular, label, fh.close)


def _stream_name(stream: object) -> str | None:
    name = getattr(stream, "name", None)
    return _short(Path(name).name) if isinstance(name, str) and name else None


def _short(text: str, limit: int = 80) -> str:
    # Error messages stay one readable line even when handed a very long "path".
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _noop() -> None:
    return None


def _too_many_bytes(label: str, limit: int, size: int | None = None) -> MediaTooLargeError:
    have = f" ({_fmt_bytes(size)})" if size is not None else ""
    return MediaTooLargeError(
        f"{label}: audio input{have} is larger than the limit of {_fmt_bytes(limit)} "
        "(MLXK_MAX_AUDIO_BYTES)",
        limit_bytes=limit,
    )


def _fmt_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.4g} MiB"
    return f"{n / 1024:.4g} KiB" if n >= 1024 else f"{n} bytes"


# --------------------------------------------------------------------------------------------
# Public entry points


def load_audio(
    source: AudioSource,
    *,
    target_rate: int = 16000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    ffmpeg: str | None = "ffmpeg",
    name: str | None = None,
) -> AudioClip:
    """Decode ``source`` to float32 mono at ``target_rate``.

    ``ffmpeg`` is looked up on PATH at call time (a name or a full path); ``None`` disables it.
    ``name`` is how error messages refer to the input (an upload's filename, say). Raises
    ``MediaError`` for anything undecodable and ``MediaTooLargeError`` when a limit is hit.
    """
    if target_rate <= 0 or max_bytes <= 0 or max_seconds <= 0:
        raise ValueError("target_rate, max_bytes and max_seconds must be positive")
    inp = _open_input(source, max_bytes, name)
    try:
        head = _peek_head(inp.reader, max_bytes)
        fmt = sniff_format(head)
        if fmt is None:
            raise MediaError(
                f"{inp.label}: cannot decode audio: {_describe_unknown(head)}. "
                f"Supported: {SUPPORTED}."
            )
        stream = _open_decoder(fmt, inp, ffmpeg, max_seconds)
        try:
            samples = _collect(stream, target_rate, max_seconds, inp.label)
        finally:
            stream.close()
    finally:
        inp.close()
    return AudioClip(
        samples, target_rate, len(samples) / target_rate, fmt, stream.channels, stream.rate
    )


def _peek_head(reader: _LimitedReader, max_bytes: int) -> bytes:
    head = reader.peek(_SNIFF_BYTES)
    if head[:3] == b"ID3" and len(head) >= 10:
        # Cover art can make the tag large: look past it to tell MP3 from ID3-tagged FLAC/AAC.
        size = _id3_size(head)
        if size > len(head) - 16:
            head = reader.peek(min(size + 16, max_bytes))
    return head


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample (frames,) or (frames, channels) float audio with soxr's high-quality filter."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError("sample rates must be positive")
    if rate_in == rate_out or x.shape[0] == 0:
        return x.copy()
    return np.asarray(soxr.resample(x, rate_in, rate_out, quality="HQ"), dtype=np.float32)


def encode_wav(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of (frames,) or (frames, channels) float samples in [-1, 1]."""
    x = np.asarray(samples, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or not 1 <= x.shape[1] <= _MAX_CHANNELS:
        raise ValueError("samples must be (frames,) or (frames, channels)")
    # 32767 keeps +1.0 in range; NaN would turn into an arbitrary integer.
    pcm = np.round(np.clip(np.nan_to_num(x), -1.0, 1.0) * 32767.0).astype("<i2")
    data = pcm.tobytes()
    channels = x.shape[1]
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    riff = struct.pack("<4sI4s", b"RIFF", 36 + len(data), b"WAVE")
    chunks = struct.pack("<4sI", b"fmt ", 16) + fmt + struct.pack("<4sI", b"data", len(data))
    return riff + chunks + data


def split_windows(clip: AudioClip, window_s: float, overlap_s: float = 0.0) -> list[AudioClip]:
    """Cut ``clip`` into windows of ``window_s`` seconds, each starting ``window_s - overlap_s``
    after the previous one. Nothing is dropped: the last window holds the remainder (shorter)."""
    if window_s <= 0 or not 0 <= overlap_s < window_s:
        raise ValueError("need window_s > 0 and 0 <= overlap_s < window_s")
    rate, n = clip.sample_rate, len(clip.samples)
    win = max(1, round(window_s * rate))
    step = max(1, win - round(overlap_s * rate))
    windows, start = [], 0
    while True:
        end = min(start + win, n)
        part = clip.samples[start:end]
        windows.append(replace(clip, samples=part, duration=len(part) / rate))
        if end >= n:
            return windows
        start += step


# --------------------------------------------------------------------------------------------
# Decoding: every decoder yields float32 blocks shaped (frames, channels)


@dataclass
class _Stream:
    rate: int
    channels: int
    blocks: Iterator[np.ndarray]
    close: Callable[[], None]


def _open_decoder(fmt: str, inp: _Input, ffmpeg: str | None, max_seconds: float) -> _Stream:
    if fmt == "wav":
        wf = _read_wav_header(inp.reader, inp.label)
        return _Stream(wf.rate, wf.channels, _wav_blocks(inp.reader, wf, inp.label), _noop)
    if fmt in _MINIAUDIO_INFO:
        return _miniaudio_stream(inp, fmt)
    if fmt == "aiff":
        return _soundfile_stream(inp, fmt)
    return _ffmpeg_stream(inp, fmt, ffmpeg, max_seconds)


def _check_layout(rate: int, channels: int, label: str) -> None:
    if not 1 <= channels <= _MAX_CHANNELS:
        raise MediaError(f"{label}: unsupported channel count {channels} (1–{_MAX_CHANNELS})")
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise MediaError(f"{label}: unsupported sample rate {rate} Hz ({_MIN_RATE}–{_MAX_RATE} Hz)")


def _collect(stream: _Stream, rate_out: int, max_seconds: float, label: str) -> np.ndarray:
    """Downmix and resample block by block, stopping as soon as the duration limit is passed."""
    _check_layout(stream.rate, stream.channels, label)
    max_frames = math.floor(max_seconds * stream.rate) if math.isfinite(max_seconds) else None
    resampler = (
        soxr.ResampleStream(stream.rate, rate_out, 1, dtype="float32", quality="HQ")
        if stream.rate != rate_out
        else None
    )
    parts: list[np.ndarray] = []
    frames = 0
    for block in stream.blocks:
        frames += len(block)
        if max_frames is not None and frames > max_frames:
            raise _too_long(label, max_seconds, frames / stream.rate)
        mono = _downmix(block)
        parts.append(resampler.resample_chunk(mono) if resampler else mono)
    if frames == 0:
        raise MediaError(f"{label}: the file holds no audio samples")
    if resampler:
        parts.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    out = np.concatenate(parts).astype(np.float32, copy=False)
    if not len(out):  # a few input frames can round down to none at a lower rate
        raise MediaError(f"{label}: the audio is too short ({frames} samples)")
    return np.clip(out, -1.0, 1.0, out=out)  # the low-pass may overshoot full scale slightly


def _downmix(block: np.ndarray) -> np.ndarray:
    # Float sources may carry NaN/inf, which would poison the resampler's filter state.
    block = np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    return block.mean(axis=1, dtype=np.float32)


def _too_long(label: str, limit: float, seen: float) -> MediaTooLargeError:
    return MediaTooLargeError(
        f"{label}: audio is longer than the limit of {_fmt_duration(limit)} "
        f"(MLXK_MAX_AUDIO_SECONDS); decoding stopped after {seen:.1f} s",
        limit_seconds=limit,
    )


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{seconds:g} s = {hours}:{minutes:02d}:{secs:02d}"


# --------------------------------------------------------------------------------------------
# WAV (RIFF, RF64), parsed here


_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


@dataclass(frozen=True)
class _WavFormat:
    tag: int  # 1 PCM, 3 float, 6 A-law, 7 µ-law (WAVE_EXTENSIBLE resolved to its sub-format)
    channels: int
    rate: int
    width: int  # bytes per sample in the container
    data_size: int | None  # None: unknown (streamed WAV), read to the end of the input


def _read_wav_header(reader: _LimitedReader, label: str) -> _WavFormat:
    """Walk the chunks up to ``data``; only small chunks (fmt, ds64) are ever held in memory."""
    riff = reader.read(12)
    if len(riff) < 12 or riff[8:12] != b"WAVE":
        raise MediaError(f"{label}: the WAV header is truncated")
    fmt: tuple[int, int, int, int] | None = None
    ds64_data: int | None = None
    while True:
        head = reader.read(8)
        if len(head) < 8:
            missing = "audio data" if fmt else "format (fmt) chunk"
            raise MediaError(f"{label}: the WAV file is truncated: it has no {missing}")
        cid, size = head[:4], struct.unpack("<I", head[4:])[0]
        if cid == b"data":
            if fmt is None:
                raise MediaError(f"{label}: malformed WAV: audio data before the format chunk")
            return _WavFormat(*fmt, data_size=_data_size(size, ds64_data))
        if cid not in (b"fmt ", b"ds64"):
            reader.skip(size + (size & 1))  # chunks are word-aligned
            continue
        if size > 65536:
            raise MediaError(f"{label}: malformed WAV: {cid.decode()!r} chunk of {size} bytes")
        body = reader.read(size + (size & 1))
        if len(body) < size:
            raise MediaError(f"{label}: the WAV header is truncated")
        if cid == b"fmt ":
            fmt = _parse_fmt(body, label)
        elif len(body) >= 16:
            ds64_data = struct.unpack_from("<Q", body, 8)[0]


def _data_size(size: int, ds64_data: int | None) -> int | None:
    # 0xFFFFFFFF: RF64 (real size in ds64) or a streamed WAV (ffmpeg to a pipe); 0: streamed too.
    if size == 0xFFFFFFFF:
        return ds64_data or None
    return size or None


def _parse_fmt(body: bytes, label: str) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise MediaError(f"{label}: malformed WAV: format chunk of {len(body)} bytes")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 26:
            raise MediaError(f"{label}: malformed WAV: WAVE_EXTENSIBLE without a sub-format")
        tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID starts with the tag
    _check_layout(rate, channels, label)
    # The container width is block_align / channels (24-bit samples may sit in 32-bit slots).
    width = block_align // channels if block_align and block_align % channels == 0 else 0
    width = width or (bits + 7) // 8
    if (tag, width) not in _WAV_DECODERS:
        raise MediaError(
            f"{label}: unsupported WAV encoding ({_WAV_TAG_NAMES.get(tag, f'format 0x{tag:04x}')}"
            f", {bits}-bit); convert it to PCM, e.g. `ffmpeg -i in.wav -c:a pcm_s16le out.wav`"
        )
    return tag, channels, rate, width


def _wav_blocks(reader: _LimitedReader, wf: _WavFormat, label: str) -> Iterator[np.ndarray]:
    frame = wf.channels * wf.width
    block = max(1, _READ_CHUNK // frame) * frame
    decode = _WAV_DECODERS[(wf.tag, wf.width)]
    remaining, total = wf.data_size, 0
    while remaining is None or remaining > 0:
        want = block if remaining is None else min(block, remaining)
        data = reader.read(want)
        total += len(data)
        usable = len(data) - len(data) % frame  # a torn last frame is dropped
        if usable:
            yield decode(data[:usable]).reshape(-1, wf.channels)
        if remaining is not None:
            remaining -= len(data)
        if len(data) < want:
            break
    if wf.data_size is not None and 0 < total < wf.data_size:  # none at all: _collect says so
        # A truncated file or a lying header: keep what is really there, say so once.
        log.warning(
            "%s: WAV header promises %d bytes of audio but the input ends after %d; "
            "using the %d bytes present",
            label,
            wf.data_size,
            total,
            total,
        )


def _int24(data: bytes) -> np.ndarray:
    raw = np.frombuffer(data, np.uint8).reshape(-1, 3)
    wide = np.zeros((len(raw), 4), np.uint8)
    wide[:, 1:] = raw  # little-endian: the sample becomes the top 24 bits of an int32
    return wide.view("<i4")[:, 0].astype(np.float32) * np.float32(2.0**-31)


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """ITU-T G.711 A-law and µ-law expansion tables, scaled to [-1, 1]."""
    code = np.arange(256, dtype=np.int32)
    u = ~code & 0xFF
    exp, mant = (u >> 4) & 7, u & 0x0F
    mu = (((mant << 3) + 0x84) << exp) - 0x84
    mu = np.where(u & 0x80, -mu, mu)
    a = code ^ 0x55
    exp, mant = (a >> 4) & 7, a & 0x0F
    mag = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    alaw = np.where(a & 0x80, mag, -mag)
    return (alaw / 32768.0).astype(np.float32), (mu / 32768.0).astype(np.float32)


_ALAW_TABLE, _MULAW_TABLE = _g711_tables()

_WAV_DECODERS: dict[tuple[int, int], Callable[[bytes], np.ndarray]] = {
    (_PCM, 1): lambda b: (np.frombuffer(b, np.uint8).astype(np.float32) - 128.0) / 128.0,
    (_PCM, 2): lambda b: np.frombuffer(b, "<i2").astype(np.float32) / 32768.0,
    (_PCM, 3): _int24,
    (_PCM, 4): lambda b: np.frombuffer(b, "<i4").astype(np.float32) * np.float32(2.0**-31),
    (_FLOAT, 4): lambda b: np.frombuffer(b, "<f4").astype(np.float32),
    (_FLOAT, 8): lambda b: np.frombuffer(b, "<f8").astype(np.float32),
    (_ALAW, 1): lambda b: _ALAW_TABLE[np.frombuffer(b, np.uint8)],
    (_MULAW, 1): lambda b: _MULAW_TABLE[np.frombuffer(b, np.uint8)],
}

_WAV_TAG_NAMES = {
    _PCM: "PCM",
    _FLOAT: "float",
    _ALAW: "A-law",
    _MULAW: "µ-law",
    2: "MS ADPCM",
    0x11: "IMA ADPCM",
    0x31: "GSM 6.10",
    0x55: "MP3 in WAV",
}


# --------------------------------------------------------------------------------------------
# MP3 and FLAC (miniaudio: dr_mp3 / dr_flac), AIFF (libsndfile)
#
# dr_flac decodes what is really there even when STREAMINFO lies about the length; libsndfile
# gives up on such a file, and prints to stderr from C on damaged MP3s, so it only gets AIFF.

_MINIAUDIO_INFO = {"mp3": miniaudio.mp3_get_info, "flac": miniaudio.flac_get_info}


def _miniaudio_stream(inp: _Input, fmt: str) -> _Stream:
    data = inp.reader.read_all()  # bounded by max_bytes; miniaudio wants the bytes in memory
    try:
        info = _MINIAUDIO_INFO[fmt](data)
        _check_layout(info.sample_rate, info.nchannels, inp.label)
        # Native rate and channel count: miniaudio's own converters stay out of the way.
        gen = miniaudio.stream_memory(
            data,
            miniaudio.SampleFormat.FLOAT32,
            info.nchannels,
            info.sample_rate,
            frames_to_read=16384,
        )
    except miniaudio.MiniaudioError:
        raise MediaError(f"{inp.label}: not a decodable {fmt.upper()} file") from None
    blocks = _miniaudio_blocks(gen, info.nchannels, inp.label, fmt)
    return _Stream(info.sample_rate, info.nchannels, blocks, gen.close)


def _miniaudio_blocks(
    gen: Iterator[Any], channels: int, label: str, fmt: str
) -> Iterator[np.ndarray]:
    try:
        for chunk in gen:
            yield np.frombuffer(chunk, dtype=np.float32).reshape(-1, channels)
    except miniaudio.MiniaudioError:
        log.warning("%s: the %s stream is damaged; using the part before it", label, fmt.upper())


def _soundfile_stream(inp: _Input, fmt: str) -> _Stream:
    # libsndfile opens a regular file itself (size checked); anything else is read, bounded.
    target: str | io.BytesIO = str(inp.path) if inp.path else io.BytesIO(inp.reader.read_all())
    try:
        sf = soundfile.SoundFile(target)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise MediaError(
            f"{inp.label}: not a decodable {fmt.upper()} file ({_one_line(exc)})"
        ) from None
    return _Stream(sf.samplerate, sf.channels, _soundfile_blocks(sf, inp.label), sf.close)


def _soundfile_blocks(sf: soundfile.SoundFile, label: str) -> Iterator[np.ndarray]:
    while True:
        try:
            block = sf.read(65536, dtype="float32", always_2d=True)
        except RuntimeError as exc:  # damaged tail: keep what decoded before it
            log.warning("%s: decoding stopped early (%s)", label, _one_line(exc))
            return
        if not len(block):
            return
        yield block


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Everything else: ffmpeg subprocess -> streamed float WAV on a pipe -> the WAV parser above


def _needs_ffmpeg(label: str, fmt: str) -> MediaError:
    what = _FFMPEG_FORMATS[fmt][0]
    return MediaError(
        f"{label}: {what} audio needs ffmpeg, which was not found on PATH. Install it "
        "(`apt-get install ffmpeg` or `brew install ffmpeg`) or convert the file to WAV, "
        "MP3 or FLAC."
    )


def _ffmpeg_stream(inp: _Input, fmt: str, ffmpeg: str | None, max_seconds: float) -> _Stream:
    exe = shutil.which(ffmpeg) if ffmpeg else None
    if exe is None:
        raise _needs_ffmpeg(inp.label, fmt)
    src, tmp = _ffmpeg_input(inp, fmt)
    # stderr goes to a file, not a pipe, so ffmpeg can never block on it; it lives as long as
    # the returned stream and is closed by _cleanup, hence no context manager.
    err = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            _ffmpeg_cmd(exe, src, fmt, max_seconds),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    except OSError as exc:
        _cleanup(None, err, tmp)
        raise MediaError(f"{inp.label}: cannot run ffmpeg ({exc})") from None
    assert proc.stdout is not None
    reader = _LimitedReader(proc.stdout, None, inp.label)
    try:
        wf = _read_wav_header(reader, inp.label)
    except MediaError:
        proc.wait()
        msg = _ffmpeg_error(err, proc.returncode)
        _cleanup(proc, err, tmp)
        raise MediaError(
            f"{inp.label}: ffmpeg could not decode this {_FFMPEG_FORMATS[fmt][0]} file: {msg}"
        ) from None
    return _Stream(
        wf.rate,
        wf.channels,
        _ffmpeg_blocks(reader, wf, proc, err, inp.label),
        lambda: _cleanup(proc, err, tmp),
    )


def _ffmpeg_input(inp: _Input, fmt: str) -> tuple[str, Path | None]:
    """ffmpeg needs a seekable file (M4A keeps its index at the end): spill other input."""
    if inp.path is not None:
        return str(inp.path), None
    data = inp.reader.read_all()
    fd, name = tempfile.mkstemp(prefix="mlxk-audio-", suffix="." + fmt)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return name, Path(name)


def _ffmpeg_cmd(exe: str, src: str, fmt: str, max_seconds: float) -> list[str]:
    cmd = [
        exe,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        "-f",
        _FFMPEG_FORMATS[fmt][1],
        "-i",
        f"file:{src}",
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
    ]
    if math.isfinite(max_seconds):
        cmd += ["-t", f"{max_seconds + 1:.3f}"]  # ffmpeg stops just past the limit by itself
    return [*cmd, "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]


def _ffmpeg_blocks(
    reader: _LimitedReader,
    wf: _WavFormat,
    proc: subprocess.Popen[bytes],
    err: IO[bytes],
    label: str,
) -> Iterator[np.ndarray]:
    frames = 0
    for block in _wav_blocks(reader, wf, label):
        frames += len(block)
        yield block
    if proc.wait() != 0:
        msg = _ffmpeg_error(err, proc.returncode)
        if frames == 0:
            raise MediaError(f"{label}: ffmpeg could not decode this file: {msg}")
        log.warning(
            "%s: ffmpeg stopped with an error after %d frames (%s); using the part decoded",
            label,
            frames,
            msg,
        )


def _ffmpeg_error(err: IO[bytes], returncode: int | None) -> str:
    err.seek(0, os.SEEK_END)
    err.seek(max(0, err.tell() - 4000))
    lines = [ln.strip() for ln in err.read().decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {returncode}"


def _cleanup(proc: subprocess.Popen[bytes] | None, err: IO[bytes], tmp: Path | None) -> None:
    if proc is not None:
        if proc.poll() is None:
            proc.kill()  # we stopped reading early (limit hit): don't let it finish
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    err.close()
    if tmp is not None:
        tmp.unlink(missing_ok=True)
