"""The vision/omni backend against tiny random models loaded through the real mlx-vlm.

Random weights produce garbage text: assertions are on token counts, finish reasons, routing
and what reached the model (prompt token counts that only the media can explain).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.helpers.tinyvlm import (
    GEMMA4_AUDIO_MS_PER_TOKEN,
    make_tiny_gemma4_omni,
    make_tiny_qwen2_vl,
)

from mlxk.backends.vision import (
    AUDIO_PROMPT,
    AUDIO_TEMPERATURE,
    DEFAULT_TEMPERATURE,
    IMAGE_PROMPT,
    VisionRequest,
    VisionRunner,
    VisionStream,
    load_vision,
    metadata_context,
)
from mlxk.errors import CapabilityMismatchError, MediaError, ValidationError
from mlxk.media.image import load_image
from mlxk.types import GenerationChunk, Sampling

# Known and harmless: mlx-vlm's qwen2_vl reads ``rope_scaling``, which transformers calls
# deprecated; Gemma's 128-bin mel bank has an empty bin at 16 kHz (real checkpoints too).
pytestmark = [
    pytest.mark.filterwarnings("ignore:`rope_scaling` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values:UserWarning"),
]

RATE = 16000
TOKENS_PER_SECOND = 1000 // GEMMA4_AUDIO_MS_PER_TOKEN  # 25 audio tokens per second


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qwen2_vl(tmp_path_factory.mktemp("qwen2_vl"))


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gemma4_omni(tmp_path_factory.mktemp("gemma4"))


@pytest.fixture(scope="module")
def qwen(qwen_dir: Path) -> VisionRunner:
    return load_vision(qwen_dir, float32_activations=True)


@pytest.fixture(scope="module")
def gemma(gemma_dir: Path) -> VisionRunner:
    return load_vision(gemma_dir, float32_activations=True)


def png(width: int = 64, height: int = 48, seed: int = 0, exif: Image.Exif | None = None) -> bytes:
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * RATE)) * 0.1).astype(np.float32)


_LAST: list[VisionRequest] = []


def stream(
    runner: VisionRunner, prompt: str | None, temperature: float | None = None, **kw: object
) -> VisionStream:
    """The runner's stream; an explicit temperature becomes the Sampling it is given."""
    sampling = None if temperature is None else Sampling(temperature, 0.9, None)
    out = runner.stream(prompt, sampling=sampling, **kw)  # type: ignore[arg-type]
    _LAST[:] = [out.request]
    return out


def last_request() -> VisionRequest:
    return _LAST[0]


def run(runner: VisionRunner, prompt: str | None, **kw: object) -> list[GenerationChunk]:
    chunks = list(stream(runner, prompt, **kw))  # type: ignore[arg-type]
    assert chunks, "a stream always ends with a chunk carrying the finish reason"
    assert all(c.finish_reason is None for c in chunks[:-1])
    return chunks


# --------------------------------------------------------------------------------------------
# Qwen2-VL: images and plain text


def test_image_gives_max_tokens_and_length(qwen: VisionRunner, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(png())
    chunks = run(qwen, "What is this?", images=[image], max_tokens=7, temperature=0.0)
    last = chunks[-1]
    assert (last.finish_reason, last.token_count) == ("length", 7)
    text_only = run(qwen, "What is this?", max_tokens=1, temperature=0.0)[-1]
    # The image became vision tokens in the prompt mlx-vlm ran.
    assert last.prompt_tokens is not None and text_only.prompt_tokens is not None
    assert last.prompt_tokens > text_only.prompt_tokens + 4


def test_text_only_prompt_uses_mlx_vlm_text_path(qwen: VisionRunner) -> None:
    chunks = run(qwen, "Hello there", max_tokens=5, temperature=0.0)
    assert (chunks[-1].finish_reason, chunks[-1].token_count) == ("length", 5)
    req = last_request()
    assert req is not None and req.temperature == 0.0
    assert [b.images for b in req.batches] == [0]
    # The prompt tokens are the chat-templated prompt: it grows token for token with the text.
    longer = run(qwen, "Hello there, friend", max_tokens=1, temperature=0.0)[-1]
    assert longer.prompt_tokens - chunks[-1].prompt_tokens == qwen.count_tokens(", friend")


def test_image_defaults_prompt_and_temperature(qwen: VisionRunner) -> None:
    run(qwen, None, images=[png()], max_tokens=2)
    req = last_request()
    assert req is not None
    assert (req.prompt, req.temperature) == (IMAGE_PROMPT, DEFAULT_TEMPERATURE)


def test_chunks_batch_images_and_stream_each_answer(qwen: VisionRunner) -> None:
    images = [png(seed=i) for i in range(5)]
    seen_batches = []
    chunks = []
    for c in stream(qwen, "Describe.", images=images, chunk=2, max_tokens=3, temperature=0.0):
        assert last_request() is not None
        seen_batches.append(len(last_request().batches))
        chunks.append(c)
    req = last_request()
    assert req is not None
    assert [b.images for b in req.batches] == [2, 2, 1]
    assert all(b.generated_tokens == 3 and b.finish_reason == "length" for b in req.batches)
    # Answers arrive while later chunks are still to run, not all at the end.
    assert seen_batches == sorted(seen_batches) and seen_batches[0] < 3
    last = chunks[-1]
    assert (last.finish_reason, last.token_count) == ("length", 9)
    assert last.prompt_tokens == sum(b.prompt_tokens for b in req.batches)


def test_chunk_and_max_tokens_are_validated(qwen: VisionRunner) -> None:
    for bad in (0, 6):
        with pytest.raises(ValidationError):
            stream(qwen, "x", images=[png()], chunk=bad)
    with pytest.raises(ValidationError):
        stream(qwen, "x", max_tokens=0)
    with pytest.raises(ValidationError):
        stream(qwen, None)


def test_vision_only_model_refuses_audio(qwen: VisionRunner) -> None:
    assert qwen.supports_images and not qwen.supports_audio
    with pytest.raises(CapabilityMismatchError):
        stream(qwen, None, audio=[noise(1.0)])


def test_undecodable_image_is_a_media_error(qwen: VisionRunner) -> None:
    with pytest.raises(MediaError):
        stream(qwen, "x", images=[b"not an image at all"])


def test_exif_metadata_reaches_the_prompt(qwen: VisionRunner) -> None:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Apple", "iPhone 13", "2024:05:01 12:00:00"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 8.0, 13.92), "E", (11.0, 34.0, 31.2)
    tagged = load_image(png(exif=exif), max_bytes=1 << 20)
    context = metadata_context([tagged])
    assert context == "[Date: 2024-05-01 | GPS: 48.1372°N, 11.5753°E | Camera: Apple iPhone 13]"
    assert metadata_context([load_image(png(), max_bytes=1 << 20)]) is None

    plain = run(qwen, "Where?", images=[png()], max_tokens=1, temperature=0.0)[-1]
    with_exif = run(qwen, "Where?", images=[tagged], max_tokens=1, temperature=0.0)[-1]
    # Same pixels; the difference is exactly the context line and the blank line after it.
    assert with_exif.prompt_tokens - plain.prompt_tokens == qwen.count_tokens(context + "\n\n")


def test_float32_activations_cast_and_off(qwen_dir: Path, qwen: VisionRunner) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    assert {v.dtype for _, v in tree_flatten(qwen.model.parameters())} == {mx.float32}
    native = load_vision(qwen_dir, float32_activations=False)
    assert {v.dtype for _, v in tree_flatten(native.model.parameters())} == {mx.bfloat16}


def test_cancel_before_first_token(qwen: VisionRunner) -> None:
    out = stream(qwen, "Hello", max_tokens=50, temperature=0.0)
    qwen.cancel()
    chunks = list(out)
    assert [(c.finish_reason, c.token_count) for c in chunks] == [("cancelled", 0)]
    # The next request starts clean.
    assert run(qwen, "Hello", max_tokens=2, temperature=0.0)[-1].finish_reason == "length"


# --------------------------------------------------------------------------------------------
# Gemma-4 style omni: audio, audio + image, windows, plain text


def _prompt_tokens(runner: VisionRunner, prompt: str | None, **kw: object) -> int:
    last = run(runner, prompt, max_tokens=1, temperature=0.0, **kw)[-1]
    assert last.prompt_tokens is not None
    return last.prompt_tokens


def test_audio_tokens_grow_with_audio_length(gemma: VisionRunner) -> None:
    # The processor expands one audio token per 40 ms of waveform: the prompt mlx-vlm ran can
    # only grow like this if the samples themselves reached it.
    counts = [_prompt_tokens(gemma, "Listen.", audio=[noise(s)]) for s in (1.0, 2.0, 4.0)]
    assert counts[1] - counts[0] == TOKENS_PER_SECOND
    assert counts[2] - counts[1] == 2 * TOKENS_PER_SECOND


def test_audio_content_changes_the_answer(gemma: VisionRunner) -> None:
    # Same length, different waveforms: the answers differ only if the audio tower's features
    # reach the language model (greedy decoding is deterministic otherwise).
    t = np.arange(2 * RATE) / RATE
    clips = [np.zeros(2 * RATE, np.float32), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(
        np.float32), noise(2.0, seed=3)]
    answers = []
    for clip in clips:
        chunks = run(gemma, "Listen.", audio=[clip], max_tokens=12, temperature=0.0)
        answers.append("".join(c.text for c in chunks))
    assert len(set(answers)) > 1


def test_audio_defaults_prompt_and_temperature(gemma: VisionRunner) -> None:
    chunks = run(gemma, None, audio=[noise(1.0)], max_tokens=3)
    req = last_request()
    assert req is not None
    assert (req.prompt, req.temperature) == (AUDIO_PROMPT, AUDIO_TEMPERATURE)
    assert chunks[-1].token_count == 3
    # Defaults are only defaults: an explicit 0.0 is used as given.
    run(gemma, None, audio=[noise(1.0)], max_tokens=1, temperature=0.0)
    assert last_request() is not None and last_request().temperature == 0.0


def test_audio_and_image_go_in_one_call(gemma: VisionRunner) -> None:
    text = _prompt_tokens(gemma, "Both.")
    with_image = _prompt_tokens(gemma, "Both.", images=[png()])
    with_audio = _prompt_tokens(gemma, "Both.", audio=[noise(1.0)])
    both = _prompt_tokens(gemma, "Both.", images=[png()], audio=[noise(1.0)])
    req = last_request()
    assert req is not None and len(req.batches) == 1
    assert (req.batches[0].images, req.batches[0].window is not None) == (1, True)
    assert both - text == (with_image - text) + (with_audio - text)


def test_long_audio_is_split_into_windows_nothing_dropped(gemma: VisionRunner) -> None:
    assert gemma.audio_window_seconds == 30.0  # 750 tokens × 40 ms, read from the processor
    base = _prompt_tokens(gemma, "Listen.", audio=[noise(1.0)]) - TOKENS_PER_SECOND
    clip = noise(70.0, seed=7)
    chunks = run(gemma, "Listen.", audio=[clip], max_tokens=2, temperature=0.0)
    req = last_request()
    assert req is not None and req.windows_used == 3 == len(req.batches)
    spans = [(w.start, w.end) for w in req.windows]
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(70.0)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # no gap, no overlap
    assert all(end - start <= gemma.audio_window_seconds for start, end in spans)
    # Every window was run, and each carried all of its audio into the prompt.
    audio_tokens = [b.prompt_tokens - base for b in req.batches]
    expected = [math.ceil((b.window.end - b.window.start) * TOKENS_PER_SECOND)
                for b in req.batches if b.window is not None]
    assert audio_tokens == expected and sum(audio_tokens) == 70 * TOKENS_PER_SECOND
    assert [b.window for b in req.batches] == list(req.windows)
    assert all(b.generated_tokens == 2 for b in req.batches)
    assert (chunks[-1].finish_reason, chunks[-1].token_count) == ("length", 6)


def test_window_limit_is_read_from_the_processor(gemma_dir: Path, tmp_path: Path) -> None:
    short = tmp_path / "short-window"
    shutil.copytree(gemma_dir, short)
    proc = json.loads((short / "processor_config.json").read_text())
    proc["audio_seq_length"] = 250  # 250 × 40 ms = 10 s per call
    (short / "processor_config.json").write_text(json.dumps(proc))
    runner = load_vision(short, float32_activations=True)
    assert runner.audio_window_seconds == 10.0
    run(runner, "Listen.", audio=[noise(25.0)], max_tokens=1, temperature=0.0)
    req = last_request()
    assert req is not None
    assert [(w.start, w.end) for w in req.windows] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]


def test_omni_model_answers_plain_text(gemma: VisionRunner) -> None:
    chunks = run(gemma, "What is two plus two?", max_tokens=4, temperature=0.0)
    assert (chunks[-1].finish_reason, chunks[-1].token_count) == ("length", 4)
    req = last_request()
    assert req is not None and req.windows == () and [b.images for b in req.batches] == [0]


def test_messages_history_and_system_reach_the_template(qwen: VisionRunner) -> None:
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "And this?"}]},
    ]
    plain = run(qwen, None, messages=history, images=[png()], max_tokens=1)[-1]
    briefed = run(qwen, None, messages=history, images=[png()], max_tokens=1,
                  system="Be brief.")[-1]  # fmt: skip
    # The template's default system line is replaced by --system, token for token.
    default_system = "You are a helpful assistant."
    assert briefed.prompt_tokens - plain.prompt_tokens == (
        qwen.count_tokens("Be brief.") - qwen.count_tokens(default_system)
    )
    req = last_request()
    assert req is not None and req.prompt is None and [b.images for b in req.batches] == [1]
