"""The mlx-lm text backend with real models: SmolLM2 (imported from its GGUF) and tiny qwen2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers.textmodels import (
    FLOAT32_ACTIVATIONS,
    SMOLLM2_PARIS_PROMPT,
    copy_model_dir,
    import_smollm2,
    make_tiny_qwen2,
)

from mlxk.backends.text import StopStrings, TextRunner, load_text
from mlxk.errors import ValidationError
from mlxk.types import GenerationChunk, Sampling

GREEDY = {"sampling": Sampling(temperature=0.0, top_p=1.0, repetition_penalty=None)}
PARIS_ANSWER = "The capital of France is Paris."  # SmolLM2 greedy, float32 and float16 alike
PARIS_TOKEN = 7042  # " Paris" in SmolLM2's vocabulary


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_smollm2(tmp_path_factory.mktemp("smollm2"))


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> TextRunner:
    return load_text(smollm2_dir, float32_activations=FLOAT32_ACTIVATIONS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TextRunner:
    path = make_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "qwen2", context=64)
    return load_text(path, float32_activations=FLOAT32_ACTIVATIONS)


def _run(runner: TextRunner, **kw) -> tuple[str, list[GenerationChunk]]:
    chunks = list(runner.stream(**kw))
    return "".join(c.text for c in chunks), chunks


# ---------------------------------------------------------------------------------------------
# Tiny random qwen2


def test_tiny_qwen2_generates_n_tokens(tiny: TextRunner) -> None:
    _, chunks = _run(tiny, prompt="hello", max_tokens=7, **GREEDY)
    last = chunks[-1]
    assert last.finish_reason == "length"
    assert last.token_count == 7
    assert last.prompt_tokens == len(tiny.encode_prompt(prompt="hello"))
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert [c.token_count for c in chunks] == sorted(c.token_count for c in chunks)


def test_default_max_tokens_fill_the_context(tiny: TextRunner) -> None:
    """No max_tokens: generate until the context (64 here) is full."""
    prompt_tokens = len(tiny.encode_prompt(prompt="abc"))
    _, chunks = _run(tiny, prompt="abc", **GREEDY)
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].token_count == 64 - prompt_tokens


def test_prompt_longer_than_context_is_refused(tiny: TextRunner) -> None:
    with pytest.raises(ValidationError, match="context length is 64 tokens"):
        tiny.stream(prompt="x" * 200)
    with pytest.raises(ValidationError):
        tiny.stream(prompt="hi", max_tokens=0)


def test_seed_makes_sampling_repeatable(tiny: TextRunner) -> None:
    kw = {"prompt": "hello", "max_tokens": 12, "sampling": Sampling(1.0, 1.0, None, seed=7)}
    first, _ = _run(tiny, **kw)
    assert _run(tiny, **kw)[0] == first


def test_count_tokens_and_templates(tiny: TextRunner) -> None:
    assert tiny.count_tokens("abc") == 3  # byte-level vocabulary without merges
    ids = tiny.encode_prompt([{"role": "user", "content": "hi"}], system="Be brief.")
    text = tiny.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    raw = tiny.encode_prompt(prompt="hi", use_chat_template=False)
    assert tiny.tokenizer.decode(raw) == "hi"


# ---------------------------------------------------------------------------------------------
# SmolLM2


def test_smollm2_chat_answers_paris(smollm2: TextRunner) -> None:
    text, chunks = _run(smollm2, prompt=SMOLLM2_PARIS_PROMPT, max_tokens=40, **GREEDY)
    assert "Paris" in text
    assert chunks[-1].finish_reason == "stop"  # ended by <|im_end|>
    assert chunks[-1].prompt_tokens == 37


def test_messages_and_system(smollm2: TextRunner) -> None:
    """Part lists flatten to text; ``system`` replaces the template's default system turn.

    (A 135M model is fragile: other system prompts can derail its answer, so the check uses
    the template's own default text and compares token ids.)
    """
    default = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    messages = [{"role": "user", "content": [{"type": "text", "text": SMOLLM2_PARIS_PROMPT}]}]
    plain = smollm2.encode_prompt(prompt=SMOLLM2_PARIS_PROMPT)
    assert smollm2.encode_prompt(messages, system=default) == plain
    with_system = [{"role": "system", "content": "replaced"}, *messages]
    assert smollm2.encode_prompt(with_system, system=default) == plain
    other = smollm2.tokenizer.decode(smollm2.encode_prompt(messages, system="Be brief."))
    assert other.startswith("<|im_start|>system\nBe brief.<|im_end|>") and default not in other
    text, _ = _run(smollm2, messages=messages, system=default, max_tokens=40, **GREEDY)
    assert "Paris" in text


def test_max_tokens_gives_length(smollm2: TextRunner) -> None:
    _, chunks = _run(smollm2, prompt=SMOLLM2_PARIS_PROMPT, max_tokens=3, **GREEDY)
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].token_count == 3


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (["Paris"], "The capital of France is "),
        (["is Par"], "The capital of France "),  # spans two tokens: " is" + " Paris"
        (["nowhere", "France is"], "The capital of "),
        (["zzz"], PARIS_ANSWER),
    ],
)
def test_stop_strings(smollm2: TextRunner, stop: list[str], expected: str) -> None:
    text, chunks = _run(smollm2, prompt=SMOLLM2_PARIS_PROMPT, stop=stop, max_tokens=40, **GREEDY)
    assert text == expected
    assert chunks[-1].finish_reason == "stop"
    assert all(s not in text for s in stop)


def test_several_eos_ids(smollm2_dir: Path, tmp_path: Path) -> None:
    """generation_config's eos list: any of them ends generation (here " Paris")."""
    model = copy_model_dir(smollm2_dir, tmp_path / "smol")
    (model / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, PARIS_TOKEN]}))
    runner = load_text(model, float32_activations=FLOAT32_ACTIVATIONS)
    assert {2, PARIS_TOKEN} <= runner.eos_token_ids
    text, chunks = _run(runner, prompt=SMOLLM2_PARIS_PROMPT, max_tokens=40, **GREEDY)
    assert text == "The capital of France is"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].token_count == 6  # 5 words and the EOS that ended it


def test_cancel_stops_within_one_step(smollm2: TextRunner) -> None:
    chunks = []
    for chunk in smollm2.stream(prompt="Tell me a long story.", max_tokens=200, **GREEDY):
        chunks.append(chunk)
        if len(chunks) == 2:
            smollm2.cancel()
    assert chunks[-1].finish_reason == "cancelled"
    assert chunks[-1].token_count <= chunks[1].token_count + 1
    # the next generation is not affected by the earlier cancel
    assert "Paris" in _run(smollm2, prompt=SMOLLM2_PARIS_PROMPT, max_tokens=40, **GREEDY)[0]


def test_float16_activations_same_answer(smollm2_dir: Path) -> None:
    runner = load_text(smollm2_dir, float32_activations=False)
    # float16 compute is slow on CPU: 5 tokens are enough to see the same greedy path
    text, _ = _run(runner, prompt=SMOLLM2_PARIS_PROMPT, max_tokens=5, **GREEDY)
    assert text == "The capital of France is"


# ---------------------------------------------------------------------------------------------
# Stop-string filter (pure text)


def _feed(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    f = StopStrings(stops)
    out = []
    for piece in pieces:
        text, hit = f.feed(piece)
        out.append(text)
        if hit:
            return out, True
    out.append(f.flush())
    return out, False


def test_stop_filter_holds_back_partial_matches() -> None:
    out, hit = _feed(["</s>"], ["Hello <", "/", "s> world"])
    assert hit and "".join(out) == "Hello "
    assert out[0] == "Hello "  # "<" held until it cannot be a stop string any more
    out, hit = _feed(["</s>"], ["a <", "b"])
    assert not hit and out == ["a ", "<b", ""]
    out, hit = _feed(["ab", "b"], ["xab"])
    assert hit and out == ["x"]  # the earliest stop wins
    out, hit = _feed([], ["x", "y"])
    assert out == ["x", "y", ""]
