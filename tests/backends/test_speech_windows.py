"""Whisper window by window (``WhisperRunner.windows``) on real tiny.en weights and real clips.

The engine runs one 30 s window per scheduler step and interleaves requests, so these check
that each ``next()`` is one window, that nothing runs before the first, that the windows fold
into ``transcribe()``'s result, and that interleaved or abandoned transcriptions do not
disturb each other. No mocks: real weights through mlx-audio on this machine's device.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mlxk.backends.platform import setup_platform
from mlxk.config import Settings

# before anything below can import mlx: the BLAS preload only works ahead of libmlx
PLATFORM = setup_platform(Settings.from_env())

from tests.helpers.realmodels import speech_clips, tiny_en_source, wer  # noqa: E402

from mlxk.backends.speech import WhisperRunner, WindowResult, load_whisper  # noqa: E402
from mlxk.errors import MediaError, ValidationError  # noqa: E402
from mlxk.types import Segment, Transcript  # noqa: E402

pytestmark = pytest.mark.slow
CLIPS = speech_clips()
GAP = np.zeros(8_000, dtype=np.float32)  # half a second of silence between clips
WINDOW_S = 30.0


def _audio(path: Path) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32")
    assert rate == 16_000 and samples.ndim == 1
    return samples


def _joined(order: list[int]) -> tuple[np.ndarray, str]:
    """The clips in the given order with a short silence between, and the joined reference."""
    parts: list[np.ndarray] = []
    for i in order:
        parts += [GAP, _audio(CLIPS[i][0])] if parts else [_audio(CLIPS[i][0])]
    return np.concatenate(parts), " ".join(CLIPS[i][2] for i in order)


# the clips in turn, eight in all (~80 s with the two LibriSpeech clips): three windows
LONG_ORDER = [i % len(CLIPS) for i in range(8)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> WhisperRunner:
    from mlxk.importers.ct2_whisper import import_ct2_whisper

    out = tmp_path_factory.mktemp("tiny-en")
    import_ct2_whisper(tiny_en_source(), out)
    return load_whisper(out, PLATFORM)


@pytest.fixture(scope="module")
def long_clip() -> tuple[np.ndarray, str]:
    audio, ref = _joined(LONG_ORDER)
    assert len(audio) / 16_000 >= 60.0
    return audio, ref


@pytest.fixture(scope="module")
def long_transcript(tiny: WhisperRunner, long_clip: tuple[np.ndarray, str]) -> Transcript:
    return tiny.transcribe(long_clip[0])


def _check_windows(results: list[WindowResult], duration: float) -> list[Segment]:
    """Windows tile the clip in order; segments continue ids and never go back in time."""
    assert results and results[0].start == 0.0
    for prev, cur in itertools.pairwise(results):
        assert cur.start == pytest.approx(prev.end) and cur.end > prev.end
    assert results[-1].end == pytest.approx(duration, abs=0.02)
    segments = [s for r in results for s in r.segments]
    assert [s.id for s in segments] == list(range(len(segments)))
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    for r in results:
        assert r.duration == duration
        for s in r.segments:
            assert 0.0 <= s.start <= s.end <= duration + 1e-6 and s.text
            assert r.start - 1e-6 <= s.start  # a window finishes only its own audio
    return segments


def test_windows_stream_a_long_clip_and_fold_into_transcribe(
    tiny: WhisperRunner, long_clip: tuple[np.ndarray, str], long_transcript: Transcript
) -> None:
    audio, ref = long_clip
    duration = len(audio) / 16_000
    gen = tiny.windows(audio)
    # nothing decoded yet: the generator has not started (no clock involved)
    assert isinstance(gen, Iterator) and inspect.getgeneratorstate(gen) == "GEN_CREATED"
    first = next(gen)
    assert first.start == 0.0 and 0.0 < first.end <= WINDOW_S + 0.02
    assert first.segments and first.language == "en"
    results = [first, *gen]
    assert len(results) > 1
    segments = _check_windows(results, duration)
    assert segments[-1].end > duration - 5.0  # the speech runs to the end of the clip
    # the fold: transcribe() is exactly the windows' segments and text
    assert long_transcript.segments == tuple(segments)
    assert long_transcript.text == "".join(r.text for r in results).strip()
    assert long_transcript.duration == duration and long_transcript.language == "en"
    assert wer(ref, long_transcript.text) <= 0.15, long_transcript.text


def test_closed_after_one_window_leaves_the_runner_usable(
    tiny: WhisperRunner, long_clip: tuple[np.ndarray, str], long_transcript: Transcript
) -> None:
    gen = tiny.windows(long_clip[0])
    first = next(gen)
    assert first.end < len(long_clip[0]) / 16_000  # more windows were left
    gen.close()
    assert tiny.transcribe(long_clip[0]) == long_transcript


def test_interleaved_transcriptions_do_not_mix(
    tiny: WhisperRunner, long_clip: tuple[np.ndarray, str], long_transcript: Transcript
) -> None:
    """Two requests' windows alternate on one runner (as the scheduler runs them): each gets
    the result it gets alone, word timestamps included on one of them."""
    other, ref = _joined([1, 0, 1])  # ~34 s: two windows
    alone = tiny.transcribe(other, word_timestamps=True)
    a = tiny.windows(long_clip[0])
    b = tiny.windows(other, word_timestamps=True)
    got: dict[str, list[WindowResult]] = {"a": [], "b": []}
    pending = {"a": a, "b": b}
    while pending:
        for key in list(pending):
            window = next(pending[key], None)
            if window is None:
                del pending[key]
            else:
                got[key].append(window)
    assert len(got["b"]) > 1
    assert tuple(_check_windows(got["a"], long_transcript.duration)) == long_transcript.segments
    segs_b = _check_windows(got["b"], alone.duration)
    assert tuple(segs_b) == alone.segments and wer(ref, alone.text) <= 0.15
    words = [w for s in segs_b for w in s.words]
    assert len(words) >= len(ref.split()) - 3
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_bad_requests_fail_when_windows_is_called(tiny: WhisperRunner) -> None:
    audio = _audio(CLIPS[0][0])
    with pytest.raises(MediaError):
        tiny.windows(np.zeros((2, 16_000), dtype=np.float32))
    with pytest.raises(MediaError):
        tiny.windows(np.full(16_000, np.nan, dtype=np.float32))
    with pytest.raises(ValidationError, match="translate"):
        tiny.windows(audio, task="translate")
    with pytest.raises(ValidationError, match="task"):
        tiny.windows(audio, task="summarise")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="English-only"):
        tiny.windows(audio, language="de")
    with pytest.raises(ValidationError, match="temperature"):
        tiny.windows(audio, temperature=1.5)


def test_empty_audio_has_no_windows(tiny: WhisperRunner) -> None:
    assert list(tiny.windows(np.zeros(0, dtype=np.float32))) == []
