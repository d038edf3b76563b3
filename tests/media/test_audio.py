"""Audio input: formats, layouts, odd and hostile files, limits, resampling quality.

Every file is generated during the run (numpy + soundfile, espeak-ng, sox, ffmpeg); tests that
need a tool skip when it is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tests.helpers.audiofiles import (
    dominant_frequency,
    espeak_wav,
    ffmpeg_convert,
    make_fake_header_wav,
    make_tone_wav,
    requires,
    sox_convert,
    tone,
    wav_format_tag,
)

from mlxk.errors import MediaError, MediaTooLargeError
from mlxk.media.audio import (
    AudioClip,
    encode_wav,
    load_audio,
    resample,
    sniff_format,
    split_windows,
)

_ROOT = Path(__file__).resolve().parents[2]  # tests/conftest.py puts it on sys.path
SPEECH = _ROOT / "tests" / "data" / "speech"
SHORT, LONG = "a_man_said_to_the_universe_sir_i_exist", "having_returned_to_the_royal_cavern"


def _media_error(exc: pytest.ExceptionInfo[MediaError]) -> str:
    """The message, checked to be a single clear line."""
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def _band_rms(x: np.ndarray, rate: int, freq: float, half_width: float = 20.0) -> float:
    """RMS amplitude of the part of ``x`` within ``freq`` ± ``half_width`` Hz (Hann window)."""
    window = np.hanning(len(x))
    spectrum = np.fft.rfft(np.asarray(x, np.float64) * window)
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = (freqs > freq - half_width) & (freqs < freq + half_width)
    return float(np.sqrt(2 * np.sum(np.abs(spectrum[band]) ** 2) / np.sum(window**2) / len(x)))


# --------------------------------------------------------------------------------------------
# Sniffing


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "wav"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3"),
        (b"\xff\xfb\x90\x64" + b"\x00" * 8, "mp3"),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 8, "aac"),  # ADTS, 23-byte frame
        (b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 30, None),  # …but no second frame
        (b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis", "ogg"),
        (b"OggS\x00\x02" + b"\x00" * 22 + b"OpusHead", "opus"),
        (b"\x00\x00\x00\x20ftypM4A ", "m4a"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "webm"),
        (b"FORM\x00\x00\x00\x00AIFF", "aiff"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", None),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"hello", None),
        (b"", None),
        (b"\xff\xfb\xf0\x64", None),  # bitrate index 15 is reserved: not an MPEG frame
        (b"\xff\xfb\x90\x64" + b"\x00" * 500, None),  # no second frame where the first ends
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_sniff_looks_past_id3_tag() -> None:
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10
    assert sniff_format(tag + b"fLaC\x00\x00\x00\x22" + b"\x00" * 8) == "flac"
    assert sniff_format(tag + b"\xff\xfb\x90\x64" + b"\x00" * 8) == "mp3"


# --------------------------------------------------------------------------------------------
# WAV encodings and layouts


@pytest.mark.parametrize(
    "subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"]
)
def test_wav_encodings_match_libsndfile(tmp_path: Path, subtype: str) -> None:
    path = make_tone_wav(tmp_path / f"{subtype}.wav", 440, 16000, 1.0, subtype)
    clip = load_audio(path)
    reference, _ = sf.read(path, dtype="float32")
    assert (clip.source_format, clip.rate_in, clip.channels_in) == ("wav", 16000, 1)
    assert clip.samples.dtype == np.float32 and clip.duration == pytest.approx(1.0)
    np.testing.assert_allclose(clip.samples, reference, atol=1e-6)
    assert dominant_frequency(clip.samples, 16000) == pytest.approx(440, abs=1)


@pytest.mark.parametrize(
    ("rate", "channels", "extensible", "subtype"),
    [
        (8000, 1, False, "PCM_16"),
        (11025, 2, False, "PCM_U8"),
        (22050, 1, True, "PCM_24"),
        (32000, 2, True, "FLOAT"),
        (44100, 2, False, "PCM_16"),
        (48000, 6, False, "PCM_24"),
        (48000, 6, True, "PCM_32"),
        (96000, 2, True, "PCM_24"),
    ],
)
def test_wav_rates_and_channels(
    tmp_path: Path, rate: int, channels: int, extensible: bool, subtype: str
) -> None:
    path = make_tone_wav(
        tmp_path / "t.wav", 1000, rate, 1.5, subtype, channels, extensible=extensible
    )
    assert (wav_format_tag(path) == 0xFFFE) == extensible
    clip = load_audio(path)
    assert (clip.rate_in, clip.channels_in, clip.sample_rate) == (rate, channels, 16000)
    assert clip.duration == pytest.approx(1.5, abs=1 / rate)
    assert dominant_frequency(clip.samples, 16000) == pytest.approx(1000, abs=1)
    # Downmix is the channel mean; the helper scales channel k by 1/(k+1).
    expected_rms = 0.5 * np.mean(1.0 / np.arange(1, channels + 1)) / np.sqrt(2)
    assert _band_rms(clip.samples, 16000, 1000) == pytest.approx(expected_rms, rel=0.02)


def test_wav_at_target_rate_is_bit_exact(tmp_path: Path) -> None:
    path = make_tone_wav(tmp_path / "t.wav", 440, 16000, 0.5, "PCM_16")
    ints, _ = sf.read(path, dtype="int16")
    np.testing.assert_array_equal(load_audio(path).samples, ints.astype(np.float32) / 32768)


def test_float_wav_with_nan_and_overs_is_sanitised(tmp_path: Path) -> None:
    data = tone(440, 16000, 0.5)[:, 0] * 3.0  # well over full scale
    data[100:110] = np.nan
    sf.write(tmp_path / "f.wav", data, 16000, subtype="FLOAT")
    samples = load_audio(tmp_path / "f.wav").samples
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0


def test_unsupported_wav_encoding_is_named(tmp_path: Path) -> None:
    sf.write(tmp_path / "adpcm.wav", tone(440, 16000, 0.5), 16000, subtype="IMA_ADPCM")
    with pytest.raises(MediaError) as exc:
        load_audio(tmp_path / "adpcm.wav")
    assert "IMA ADPCM" in _media_error(exc)


def test_streamed_and_rf64_wav_read_to_end(tmp_path: Path) -> None:
    # ffmpeg writing to a pipe leaves the data size at 0xFFFFFFFF: read until the input ends.
    pcm = (tone(440, 16000, 2.0)[:, 0] * 32767).astype("<i2").tobytes()
    header = bytearray(encode_wav(np.zeros(0, np.float32), 16000))
    header[40:44] = struct.pack("<I", 0xFFFFFFFF)
    assert load_audio(bytes(header) + pcm).duration == pytest.approx(2.0)


@requires("ffmpeg")
def test_rf64_wav(tmp_path: Path) -> None:
    src = make_tone_wav(tmp_path / "t.wav", 440, 16000, 1.0)
    rf64 = ffmpeg_convert(src, tmp_path / "rf64.wav", "-rf64", "always")
    assert rf64.read_bytes()[:4] == b"RF64"
    assert load_audio(rf64).duration == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Other containers


def test_flac_and_aiff_in_process(tmp_path: Path) -> None:
    for fmt in ("FLAC", "AIFF"):
        path = tmp_path / f"t.{fmt.lower()}"
        sf.write(path, tone(440, 44100, 1.0, 2), 44100, format=fmt, subtype="PCM_16")
        for source in (path, path.read_bytes()):
            clip = load_audio(source)
            assert (clip.source_format, clip.channels_in, clip.rate_in) == (fmt.lower(), 2, 44100)
            assert clip.duration == pytest.approx(1.0, abs=1e-3)
            assert dominant_frequency(clip.samples, 16000) == pytest.approx(440, abs=1)


def test_flac_multichannel_hi_res() -> None:
    levels = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # 5.1: the downmix is their mean
    buf = io.BytesIO()
    sf.write(buf, np.tile(levels, (48000, 1)), 96000, format="FLAC", subtype="PCM_24")
    clip = load_audio(buf.getvalue())
    assert (clip.channels_in, clip.rate_in, clip.duration) == (6, 96000, 0.5)
    assert np.median(clip.samples) == pytest.approx(0.35, abs=1e-4)


def test_flac_whose_header_lies_about_its_length() -> None:
    buf = io.BytesIO()
    sf.write(buf, tone(440, 16000, 2.0), 16000, format="FLAC")
    data = bytearray(buf.getvalue())
    # STREAMINFO's 36-bit total-samples field (bytes 21-25 of the file): claim 2^36 - 1.
    data[21] |= 0x0F
    data[22:26] = b"\xff\xff\xff\xff"
    clip = load_audio(bytes(data))
    assert clip.duration == pytest.approx(2.0)
    with pytest.raises(MediaTooLargeError):
        load_audio(bytes(data), max_seconds=1)


def _id3_tag(padding: int) -> bytes:
    size = bytes((padding >> shift) & 0x7F for shift in (21, 14, 7, 0))  # "syncsafe" integer
    return b"ID3\x04\x00\x00" + size + bytes(padding)


def test_large_id3_tag_before_mp3_or_flac() -> None:
    # Cover art makes tags big: the sniffer must look past it rather than guess "mp3".
    buf = io.BytesIO()
    sf.write(buf, tone(440, 16000, 1.0), 16000, format="FLAC")
    flac = load_audio(_id3_tag(200_000) + buf.getvalue())
    assert (flac.source_format, flac.duration) == ("flac", 1.0)
    mp3 = (SPEECH / f"{SHORT}.mp3").read_bytes()
    tag_size = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(mp3[6:10]))
    bare = mp3[tag_size:]
    assert bare[:2] == b"\xff\xf3"
    clip = load_audio(_id3_tag(200_000) + bare)
    assert clip.source_format == "mp3" and clip.duration == pytest.approx(4.65, abs=0.1)


@requires("ffmpeg")
@pytest.mark.parametrize(
    ("ext", "fmt", "args", "tolerance"),
    [
        ("mp3", "mp3", ["-c:a", "libmp3lame"], 0.1),
        ("ogg", "ogg", ["-c:a", "libvorbis"], 0.05),
        ("opus", "opus", ["-c:a", "libopus"], 0.05),
        ("m4a", "m4a", ["-c:a", "aac"], 0.1),
        ("aac", "aac", ["-c:a", "aac", "-f", "adts"], 0.1),
        ("webm", "webm", ["-c:a", "libopus"], 0.05),
    ],
)
def test_compressed_formats(
    tmp_path: Path, ext: str, fmt: str, args: list[str], tolerance: float
) -> None:
    src = make_tone_wav(tmp_path / "t.wav", 440, 44100, 2.0, "PCM_16", 2)
    path = ffmpeg_convert(src, tmp_path / f"t.{ext}", *args)
    for source in (path, path.read_bytes(), io.BytesIO(path.read_bytes())):
        clip = load_audio(source)
        assert clip.source_format == fmt and clip.channels_in == 2 and clip.sample_rate == 16000
        assert clip.duration == pytest.approx(2.0, abs=tolerance)
        assert dominant_frequency(clip.samples, 16000) == pytest.approx(440, abs=1)


@requires("ffmpeg")
@pytest.mark.parametrize(("ext", "name"), [("ogg", "OGG"), ("m4a", "M4A"), ("webm", "WebM")])
def test_without_ffmpeg_the_error_names_format_and_fix(tmp_path: Path, ext: str, name: str) -> None:
    src = make_tone_wav(tmp_path / "t.wav", 440, 16000, 0.5)
    codec = "libvorbis" if ext == "ogg" else ("aac" if ext == "m4a" else "libopus")
    path = ffmpeg_convert(src, tmp_path / f"t.{ext}", "-c:a", codec)
    for ffmpeg in (None, "no-such-ffmpeg-binary"):
        with pytest.raises(MediaError) as exc:
            load_audio(path, ffmpeg=ffmpeg)
        text = _media_error(exc)
        assert name in text and "ffmpeg" in text
        assert "apt-get install ffmpeg" in text and "brew install ffmpeg" in text


def test_ffmpeg_not_needed_for_native_formats(tmp_path: Path) -> None:
    path = make_tone_wav(tmp_path / "t.wav", 440, 16000, 0.5)
    assert load_audio(path, ffmpeg=None).duration == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# Real speech


@pytest.mark.parametrize(("stem", "seconds"), [(SHORT, 4.65), (LONG, 14.47)])
def test_speech_clips_wav_and_mp3(stem: str, seconds: float) -> None:
    wav = load_audio(SPEECH / f"{stem}.wav")
    mp3 = load_audio(SPEECH / f"{stem}.mp3")
    assert (wav.source_format, wav.rate_in, wav.channels_in) == ("wav", 16000, 1)
    assert wav.duration == pytest.approx(seconds, abs=0.01)
    assert mp3.source_format == "mp3" and mp3.duration == pytest.approx(seconds, abs=0.1)
    n = min(len(wav.samples), len(mp3.samples))
    assert np.corrcoef(wav.samples[:n], mp3.samples[:n])[0, 1] > 0.95


@requires("sox")
def test_speech_reencoded_44k_stereo_comes_back_16k_mono(tmp_path: Path) -> None:
    original = load_audio(SPEECH / f"{SHORT}.wav")
    stereo = sox_convert(SPEECH / f"{SHORT}.wav", tmp_path / "s44.wav", rate=44100, channels=2)
    assert sf.info(stereo).samplerate == 44100 and sf.info(stereo).channels == 2
    clip = load_audio(stereo)
    assert (clip.sample_rate, clip.rate_in, clip.channels_in) == (16000, 44100, 2)
    assert clip.samples.ndim == 1
    assert clip.duration == pytest.approx(4.65, abs=0.01)
    n = min(len(clip.samples), len(original.samples))
    assert np.corrcoef(clip.samples[:n], original.samples[:n])[0, 1] > 0.99


@requires("ffmpeg")
def test_speech_reencoded_ogg_stereo_48k(tmp_path: Path) -> None:
    path = ffmpeg_convert(
        SPEECH / f"{LONG}.wav", tmp_path / "s.ogg", "-ar", "48000", "-ac", "2", "-c:a", "libvorbis"
    )
    clip = load_audio(path)
    assert (clip.sample_rate, clip.rate_in, clip.channels_in) == (16000, 48000, 2)
    assert clip.duration == pytest.approx(14.47, abs=0.05)


@requires("espeak-ng")
def test_espeak_speech(tmp_path: Path) -> None:
    path = espeak_wav(tmp_path / "speech.wav", "Hello from the media tests.")
    info = sf.info(path)
    clip = load_audio(path)
    assert (clip.rate_in, clip.channels_in) == (info.samplerate, 1)
    assert clip.duration == pytest.approx(info.frames / info.samplerate, abs=1e-3)
    assert clip.duration > 0.5 and np.abs(clip.samples).max() > 0.05


# --------------------------------------------------------------------------------------------
# Odd and hostile input


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "empty"),
        (b"This is not audio, just a text file with a .wav name.\n" * 3, "text"),
        (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), "no known"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "PNG image"),
        (b"RIFF\x00", "truncated"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00", "truncated"),
    ],
)
def test_undecodable_input_gives_one_clear_error(
    tmp_path: Path, content: bytes, phrase: str
) -> None:
    path = tmp_path / "input.wav"
    path.write_bytes(content)
    for source in (path, content):
        with pytest.raises(MediaError) as exc:
            load_audio(source, name="input.wav")
        text = _media_error(exc)
        assert text.startswith("input.wav:") and phrase in text
        assert not isinstance(exc.value, MediaTooLargeError)


def test_truncated_wav_yields_the_decodable_part(tmp_path: Path) -> None:
    path = make_tone_wav(tmp_path / "t.wav", 440, 16000, 2.0)
    whole = path.read_bytes()
    path.write_bytes(whole[: 44 + 16000 * 2 + 1])  # 1 s of audio plus a torn sample
    clip = load_audio(path)
    assert clip.duration == pytest.approx(1.0)
    assert dominant_frequency(clip.samples, 16000) == pytest.approx(440, abs=1)


def test_header_only_wav_is_an_error(tmp_path: Path) -> None:
    path = make_fake_header_wav(tmp_path / "h.wav", 1000, real_seconds=0)
    with pytest.raises(MediaError) as exc:
        load_audio(path)
    assert "no audio samples" in _media_error(exc)


def test_header_claiming_4gb_yields_the_real_part(tmp_path: Path) -> None:
    path = make_fake_header_wav(tmp_path / "liar.wav", 0xFFFFFFF0, real_seconds=0.25)
    assert path.stat().st_size == 44 + 8000
    clip = load_audio(path)
    assert clip.duration == pytest.approx(0.25)
    assert dominant_frequency(clip.samples, 16000) == pytest.approx(1000, abs=4)


_MEASURE = textwrap.dedent(
    """
    import resource, sys, tracemalloc
    from mlxk.media.audio import load_audio
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    clip = load_audio(sys.argv[1])
    peak = tracemalloc.get_traced_memory()[1]
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    print(peak, grown * scale, clip.duration)
    """
)


def test_lying_header_does_not_allocate_what_it_claims(tmp_path: Path) -> None:
    path = make_fake_header_wav(tmp_path / "liar.wav", 0xFFFFFFF0, real_seconds=1.0)
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(_ROOT / "src")},
    )
    traced_peak, rss_growth, duration = (float(v) for v in out.stdout.split())
    assert duration == pytest.approx(1.0)
    assert traced_peak < 16 * 2**20, f"tracemalloc peak {traced_peak / 2**20:.1f} MiB"
    assert rss_growth < 128 * 2**20, f"peak RSS grew by {rss_growth / 2**20:.1f} MiB"


def test_mutated_wav_headers_never_escape_as_other_errors(tmp_path: Path) -> None:
    good = make_tone_wav(tmp_path / "t.wav", 440, 8000, 0.2, "PCM_16", 2).read_bytes()
    rng = np.random.default_rng(7)
    for _ in range(300):
        data = bytearray(good)
        for pos in rng.integers(0, 48, size=rng.integers(1, 6)):
            data[pos] = int(rng.integers(0, 256))
        try:
            clip = load_audio(bytes(data), max_seconds=30)
        except MediaError as exc:
            assert "\n" not in str(exc)
        else:
            assert isinstance(clip, AudioClip) and np.isfinite(clip.samples).all()


def test_damaged_mp3_keeps_what_decodes_or_fails_clearly() -> None:
    data = (SPEECH / f"{LONG}.mp3").read_bytes()
    clip = load_audio(data[: len(data) // 2])
    assert 5 < clip.duration < 9
    with pytest.raises(MediaError):
        load_audio(data[:200] + bytes(5000))  # the ID3 tag, then nothing decodable


def test_truncated_flac_and_ogg(tmp_path: Path) -> None:
    flac = tmp_path / "t.flac"
    sf.write(flac, tone(440, 16000, 4.0), 16000, format="FLAC")
    cut = flac.read_bytes()[: flac.stat().st_size // 2]
    _decodes_partly_or_fails_cleanly(cut, 4.0)
    if shutil.which("ffmpeg"):
        ogg = ffmpeg_convert(
            make_tone_wav(tmp_path / "t.wav", 440, 16000, 4.0),
            tmp_path / "t.ogg",
            "-c:a",
            "libvorbis",
        )
        _decodes_partly_or_fails_cleanly(ogg.read_bytes()[: ogg.stat().st_size // 2], 4.0)


def _decodes_partly_or_fails_cleanly(data: bytes, full_seconds: float) -> None:
    try:
        clip = load_audio(data)
    except MediaError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 < clip.duration < full_seconds


# --------------------------------------------------------------------------------------------
# Limits


class _CountingStream(io.RawIOBase):
    """A forward-only stream that records how much was read from it (no seek, no tell)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._data.readinto(buffer)
        self.read_bytes += n
        return n


def test_duration_limit_stops_decoding_early(tmp_path: Path) -> None:
    path = make_tone_wav(tmp_path / "long.wav", 440, 8000, 600.0)  # 10 min, 9.6 MB
    stream = _CountingStream(path.read_bytes())
    with pytest.raises(MediaTooLargeError) as exc:
        load_audio(stream, max_seconds=10, max_bytes=2**30)
    text = _media_error(exc)
    assert "10 s" in text and "MLXK_MAX_AUDIO_SECONDS" in text
    assert stream.read_bytes < 0.25 * path.stat().st_size  # it stopped long before the end
    assert load_audio(path, max_seconds=600).duration == pytest.approx(600)


def test_duration_limit_on_a_lying_streamed_header() -> None:
    # Unknown data size and endless real data: the limit, not the header, ends decoding.
    pcm = (tone(440, 16000, 30.0)[:, 0] * 32767).astype("<i2").tobytes()
    header = bytearray(encode_wav(np.zeros(0, np.float32), 16000))
    header[40:44] = struct.pack("<I", 0xFFFFFFFF)
    with pytest.raises(MediaTooLargeError, match="limit of 5 s"):
        load_audio(bytes(header) + pcm, max_seconds=5)


@requires("ffmpeg")
def test_duration_limit_mp3_and_ffmpeg_formats(tmp_path: Path) -> None:
    src = make_tone_wav(tmp_path / "t.wav", 440, 16000, 20.0)
    for ext, codec in (("mp3", "libmp3lame"), ("ogg", "libvorbis"), ("m4a", "aac")):
        path = ffmpeg_convert(src, tmp_path / f"t.{ext}", "-c:a", codec)
        with pytest.raises(MediaTooLargeError, match="limit of 3 s"):
            load_audio(path, max_seconds=3)
        assert load_audio(path, max_seconds=25).duration == pytest.approx(20, abs=0.1)


def test_byte_limit_for_every_source_kind(tmp_path: Path) -> None:
    path = make_tone_wav(tmp_path / "t.wav", 440, 16000, 2.0)  # 64 KB
    data = path.read_bytes()
    for source in (path, str(path), data, bytearray(data), io.BytesIO(data), _CountingStream(data)):
        with pytest.raises(MediaTooLargeError) as exc:
            load_audio(source, max_bytes=10_000)  # type: ignore[arg-type]
        assert "MLXK_MAX_AUDIO_BYTES" in _media_error(exc)
    assert load_audio(path, max_bytes=len(data)).duration == pytest.approx(2.0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_byte_limit_is_checked_while_reading_a_pipe(tmp_path: Path) -> None:
    # A FIFO has no size to check up front: the limit must trip while bytes arrive.
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    payload = make_tone_wav(tmp_path / "t.wav", 440, 16000, 30.0).read_bytes()  # ~960 KB

    def writer() -> None:
        try:
            with open(fifo, "wb") as fh:
                fh.write(payload)
        except BrokenPipeError:
            pass  # the reader gave up at the limit, as it should

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(MediaTooLargeError):
            load_audio(fifo, max_bytes=100_000)
    finally:
        thread.join(timeout=10)


# --------------------------------------------------------------------------------------------
# Resampling quality


def _alias_attenuation_db(out: np.ndarray, tone_in: np.ndarray) -> float:
    # 12 kHz sampled at 16 kHz would fold to 16 - 12 = 4 kHz.
    return 20 * np.log10(_band_rms(out, 16000, 4000) / _band_rms(tone_in, 44100, 12000))


def test_resampling_low_pass_rejects_aliases(tmp_path: Path) -> None:
    x = tone(12000, 44100, 2.0, amplitude=0.9)[:, 0].astype(np.float32)
    direct = _alias_attenuation_db(resample(x, 44100, 16000), x)
    sf.write(tmp_path / "hf.wav", x, 44100, subtype="PCM_24")
    decoded = _alias_attenuation_db(load_audio(tmp_path / "hf.wav").samples, x)
    assert direct <= -60 and decoded <= -60, (direct, decoded)
    # The check itself has teeth: naive linear interpolation aliases loudly.
    naive = np.interp(np.arange(32000) / 16000, np.arange(len(x)) / 44100, x)
    assert _alias_attenuation_db(naive, x) > -20


def test_resampling_keeps_the_passband() -> None:
    x = tone(1000, 44100, 2.0)[:, 0].astype(np.float32)
    y = resample(x, 44100, 16000)
    assert len(y) == 32000 and y.dtype == np.float32
    gain_db = 20 * np.log10(_band_rms(y, 16000, 1000) / _band_rms(x, 44100, 1000))
    assert abs(gain_db) < 0.1


def test_resample_shapes_and_identity() -> None:
    stereo = tone(440, 48000, 0.5, 2).astype(np.float32)
    assert resample(stereo, 48000, 16000).shape == (8000, 2)
    mono = stereo[:, 0]
    same = resample(mono, 16000, 16000)
    np.testing.assert_array_equal(same, mono)
    assert same is not mono
    assert resample(np.zeros(0, np.float32), 44100, 16000).shape == (0,)


def test_other_target_rates(tmp_path: Path) -> None:
    path = make_tone_wav(tmp_path / "t.wav", 440, 44100, 1.0)
    for rate in (8000, 24000, 48000):
        clip = load_audio(path, target_rate=rate)
        assert clip.sample_rate == rate and len(clip.samples) == rate
        assert dominant_frequency(clip.samples, rate) == pytest.approx(440, abs=1)


# --------------------------------------------------------------------------------------------
# Sources, encode, windows


class _ReadOnlyStream:
    """Only ``read``: like a socket file or stdin."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(n, 1000) if n > 0 else n)  # short reads, as pipes do


def test_source_kinds(tmp_path: Path) -> None:
    path = make_tone_wav(tmp_path / "t.wav", 440, 22050, 1.0)
    data = path.read_bytes()
    with path.open("rb") as fh:
        sources: list[object] = [
            path,
            str(path),
            data,
            bytearray(data),
            memoryview(data),
            io.BytesIO(data),
            _ReadOnlyStream(data),
            fh,
        ]
        for source in sources:
            clip = load_audio(source)  # type: ignore[arg-type]
            assert clip.duration == pytest.approx(1.0) and clip.rate_in == 22050


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(MediaError, match="directory"):
        load_audio(tmp_path)


def test_encode_wav_round_trip() -> None:
    x = tone(440, 16000, 0.5)[:, 0].astype(np.float32)
    clip = load_audio(encode_wav(x, 16000))
    np.testing.assert_allclose(clip.samples, x, atol=2 / 32768)
    stereo = encode_wav(tone(440, 8000, 0.5, 2), 8000)
    back = load_audio(stereo, target_rate=8000)
    assert (back.channels_in, back.rate_in, back.duration) == (2, 8000, 0.5)
    info = sf.info(io.BytesIO(stereo))
    assert (info.subtype, info.channels, info.frames) == ("PCM_16", 2, 4000)


def _clip(seconds: float, rate: int = 16000) -> AudioClip:
    samples = np.arange(round(seconds * rate), dtype=np.float32) / 1e6
    return AudioClip(samples, rate, len(samples) / rate, "wav", 1, rate)


def test_split_windows_keeps_every_sample() -> None:
    clip = _clip(10.5)
    windows = split_windows(clip, 3.0)
    assert [w.duration for w in windows] == [3.0, 3.0, 3.0, 1.5]
    np.testing.assert_array_equal(np.concatenate([w.samples for w in windows]), clip.samples)
    assert all(w.sample_rate == 16000 and w.source_format == "wav" for w in windows)


def test_split_windows_with_overlap() -> None:
    clip = _clip(10.0)
    windows = split_windows(clip, 4.0, overlap_s=1.0)
    starts = [int(w.samples[0] * 1e6) / 16000 for w in windows]
    assert starts == [0.0, 3.0, 6.0]
    assert windows[-1].samples[-1] == clip.samples[-1]  # the end is never dropped
    assert split_windows(clip, 20.0)[0].duration == 10.0
    for bad in ((0.0, 0.0), (2.0, 2.0), (2.0, -1.0)):
        with pytest.raises(ValueError):
            split_windows(clip, *bad)


def test_tiny_input_and_unlimited_duration() -> None:
    assert load_audio(encode_wav(np.zeros(3), 44100)).samples.shape == (1,)
    with pytest.raises(MediaError, match="too short"):
        load_audio(encode_wav(np.zeros(1), 44100))
    clip = load_audio(encode_wav(np.zeros(4410), 44100), max_seconds=float("inf"))
    assert clip.duration == pytest.approx(0.1)
