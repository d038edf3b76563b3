"""GGUF → MLX import with the real SmolLM2 GGUF and tiny GGUF files written by ``gguf``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from tests.helpers.textmodels import (
    FLOAT32_ACTIVATIONS,
    SMOLLM2_PARIS_PROMPT,
    import_smollm2,
    make_tiny_gguf,
    make_tiny_model,
    make_tiny_spm_gguf,
    smollm2_gguf,
    train_spm,
    transformers_reference,
    write_gguf,
)

from mlxk.errors import ConversionError, ImportFormatError, UnsupportedArchitectureError
from mlxk.importers.gguf_llama import import_gguf, looks_like_gguf
from mlxk.store.safetensors_header import read_header, tensor_entries, tensor_nbytes

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# Measured once (see the test below): greedy tokens of the imported SmolLM2 equal those of
# transformers' own GGUF loader for this prompt.
STORY_PROMPT = "Write a short story about a robot who learns to paint."


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_smollm2(tmp_path_factory.mktemp("smollm2"))


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path):
    from mlxk.backends.text import load_text

    return load_text(smollm2_dir, float32_activations=FLOAT32_ACTIVATIONS)


def _answer(runner, prompt: str = SMOLLM2_PARIS_PROMPT, **kw) -> str:
    kw = {"max_tokens": 40, **kw}  # greedy, no penalty: the stream's defaults
    return "".join(c.text for c in runner.stream(prompt=prompt, **kw))


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


# ---------------------------------------------------------------------------------------------
# SmolLM2


def test_smollm2_import_writes_hf_files(smollm2_dir: Path) -> None:
    config = json.loads((smollm2_dir / "config.json").read_text())
    expected = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 30,
        "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
        "intermediate_size": 1536, "vocab_size": 49152, "rope_theta": 100000.0,
        "tie_word_embeddings": True, "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16",
    }  # fmt: skip
    assert {k: config[k] for k in expected} == expected
    generation = json.loads((smollm2_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2
    tok_config = json.loads((smollm2_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_config["chat_template"]
    assert tok_config["eos_token"] == "<|im_end|>"
    entries = tensor_entries(read_header(smollm2_dir / "model.safetensors"))
    assert len(entries) == 272  # 30 layers x 9 + embeddings + final norm; lm_head is tied
    assert {e["dtype"] for e in entries.values()} == {"F16"}
    assert entries["model.embed_tokens.weight"]["shape"] == [49152, 576]
    assert entries["model.layers.0.self_attn.k_proj.weight"]["shape"] == [192, 576]


def test_smollm2_import_info_and_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    info = import_gguf(smollm2_gguf(), tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert info.architecture == "llama"
    assert info.name_guess == "SmolLM2-135M-Instruct"
    assert info.n_params == 134_515_008
    assert info.source_quantization == "Q4_1"
    assert info.quantization is None and info.warnings == ()
    assert info.source_sha256 == hashlib.sha256(smollm2_gguf().read_bytes()).hexdigest()
    assert len(calls) == 272
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    entries = tensor_entries(read_header(tmp_path / "model.safetensors"))
    assert calls[-1][0] == calls[-1][1] == sum(tensor_nbytes(e) for e in entries.values())


def test_smollm2_answers_paris(smollm2) -> None:
    assert "Paris" in _answer(smollm2)


def test_first_20_greedy_tokens_match_transformers_gguf_loader(smollm2) -> None:
    """transformers dequantizes the same GGUF to float32 and runs it with torch.

    Measured on Linux x86-64 CPU: all 20 tokens equal; the last-position logits differ by at
    most ~0.025 (scale ~26) because our weights are stored as float16 (rounding of the
    dequantized values), which does not change any greedy choice here.
    """
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    gguf = smollm2_gguf()
    ids = smollm2.encode_prompt([{"role": "user", "content": STORY_PROMPT}])
    steps = generate_step(mx.array(ids), smollm2.model, max_tokens=20)
    ours = [token for token, _ in steps]
    theirs = transformers_reference("generate", str(gguf), "20", ",".join(map(str, ids)))["tokens"]
    assert len(ours) == 20
    assert ours == theirs, (smollm2.tokenizer.decode(ours), smollm2.tokenizer.decode(theirs))


def test_tokenizer_matches_transformers_gguf_tokenizer(smollm2) -> None:
    texts = [
        "Hello world, 12345 and 2024!",
        "The quick brown fox\n\n  jumps  over",
        "naïve café 🚀",
    ]
    chat = [{"role": "user", "content": SMOLLM2_PARIS_PROMPT}]
    request = json.dumps({"texts": texts, "chat": chat})
    theirs = transformers_reference("tokenize", str(smollm2_gguf()), request)
    assert [smollm2.tokenizer.encode(t) for t in texts] == theirs["texts"]
    assert smollm2.encode_prompt(chat) == theirs["chat"]


@pytest.mark.parametrize(("bits", "group_size"), [(8, 64), (4, 32)])
def test_quantized_import_still_answers_paris(tmp_path: Path, bits: int, group_size: int) -> None:
    from mlxk.backends.text import load_text

    info = import_gguf(smollm2_gguf(), tmp_path, quantize=bits, q_group_size=group_size)
    assert info.quantization == {"bits": bits, "group_size": group_size}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantization"]["bits"] == bits
    assert config["quantization"]["group_size"] == group_size
    assert not (tmp_path / ".dequantized").exists()
    assert (tmp_path / "tokenizer.json").is_file()
    # Q4_1 source: 8 bits cannot restore what 4-bit blocks lost
    assert bool(info.warnings) == (bits > 4)
    runner = load_text(tmp_path, float32_activations=FLOAT32_ACTIVATIONS)
    assert "Paris" in _answer(runner)


# ---------------------------------------------------------------------------------------------
# Tiny models written to GGUF: exact round trips


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_tiny_gguf_round_trip_is_exact(tmp_path: Path, arch: str) -> None:
    """float32 GGUF → import → the very weights of the HF model it was written from.

    llama: attn_q/attn_k are stored in llama.cpp's permuted row order and must come back;
    qwen2: q/k/v biases, no permutation; qwen3: q_norm/k_norm and an explicit head_dim.
    """
    import mlx.core as mx

    from mlxk.backends.text import load_text

    hf_dir = make_tiny_model(tmp_path / "hf", arch)
    gguf = make_tiny_gguf(tmp_path / f"{arch}.gguf", arch)
    out = tmp_path / "out"
    out.mkdir()
    info = import_gguf(gguf, out)
    assert info.dtype == "float32"  # an all-float32 file keeps its precision
    original, imported = (
        _load_tensors(hf_dir / "model.safetensors"),
        _load_tensors(out / "model.safetensors"),
    )
    assert original.keys() == imported.keys()
    for name, value in original.items():
        np.testing.assert_array_equal(imported[name], value, err_msg=name)
    a = load_text(hf_dir, float32_activations=True)
    b = load_text(out, float32_activations=True)
    ids = a.encode_prompt(prompt="hello there")
    assert b.encode_prompt(prompt="hello there") == ids
    np.testing.assert_array_equal(
        np.array(a.model(mx.array([ids]))), np.array(b.model(mx.array([ids])))
    )


def test_llama3_rope_freqs_become_rope_scaling(tmp_path: Path) -> None:
    """Llama 3.1+ GGUFs keep rope scaling only as a rope_freqs tensor of per-frequency divisors;
    the expected divisors come from mlx-lm's own Llama3RoPE, not from the importer."""
    import mlx.core as mx
    from mlx_lm.models.rope_utils import Llama3RoPE

    from mlxk.backends.text import load_text

    scaling = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip
    base, head_dim = 500000.0, 16
    rope = Llama3RoPE(head_dim, 131072, False, base, scaling)
    plain = base ** (np.arange(0, head_dim, 2) / head_dim)
    divisors = (np.array(rope._freqs.astype(mx.float32)) / plain).astype(np.float32)
    assert divisors.min() == pytest.approx(1.0) and divisors.max() == pytest.approx(32.0)
    gguf = make_tiny_gguf(
        tmp_path / "l3.gguf", "llama", rope_theta=base,
        extra_tensors={"rope_freqs.weight": divisors},
    )  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    import_gguf(gguf, out)
    config = json.loads((out / "config.json").read_text())
    assert config["rope_scaling"] == scaling
    assert config["rope_theta"] == base
    assert "rope_freqs.weight" not in tensor_entries(read_header(out / "model.safetensors"))
    runner = load_text(out, float32_activations=True)
    assert isinstance(runner.model.model.layers[0].self_attn.rope, Llama3RoPE)


def test_bad_quantize_arguments_fail_before_writing(tmp_path: Path) -> None:
    gguf = make_tiny_gguf(tmp_path / "m.gguf", "qwen2")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConversionError, match="7-bit"):
        import_gguf(gguf, out, quantize=7)
    with pytest.raises(ConversionError, match="group 48"):
        import_gguf(gguf, out, quantize=4, q_group_size=48)
    _assert_untouched(out, set())


def test_sentencepiece_tokenizer_matches_sentencepiece(tmp_path: Path) -> None:
    """A "llama" (SentencePiece) vocabulary becomes a tokenizers BPE with byte fallback."""
    from transformers import AutoTokenizer

    sp = train_spm(tmp_path)
    gguf = make_tiny_spm_gguf(tmp_path / "spm.gguf", sp)
    out = tmp_path / "out"
    out.mkdir()
    import_gguf(gguf, out)
    tok = AutoTokenizer.from_pretrained(out)
    texts = [
        "the model reads every token",
        "  two leading spaces and two trailing  ",
        "Paris 2024: 12 345 prices, émojis 🚀 and ñ",
        "line one\nline two\n\n\ttab",
        "unseen words xylophone quokka",
    ]
    for text in texts:
        assert tok.encode(text) == [sp.bos_id(), *sp.encode(text)], text
        assert tok.decode(tok.encode(text), skip_special_tokens=True) == sp.decode(sp.encode(text))


def test_several_eos_ids_are_written(tmp_path: Path) -> None:
    from mlxk.backends.text import load_text

    eot = 256  # <|endoftext|> as end-of-turn besides <|im_end|> (258)
    gguf = make_tiny_gguf(tmp_path / "m.gguf", "qwen2", extra_eos={"eot": eot})
    out = tmp_path / "out"
    out.mkdir()
    import_gguf(gguf, out)
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [258, eot]
    runner = load_text(out, float32_activations=True)
    assert {258, eot} <= runner.eos_token_ids


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors, out_dir left as it was


def _assert_untouched(out: Path, before: set[str]) -> None:
    assert {p.name for p in out.iterdir()} == before


def test_unsupported_architecture(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "bert.gguf", "bert")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsupportedArchitectureError) as err:
        import_gguf(gguf, out)
    assert "'bert'" in err.value.message and "llama, qwen2, qwen3" in err.value.message
    _assert_untouched(out, set())


def test_failure_after_writing_weights_removes_them(tmp_path: Path) -> None:
    gguf = make_tiny_gguf(tmp_path / "m.gguf", "qwen2", tokenizer_model="t5")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("was here before")
    with pytest.raises(UnsupportedArchitectureError, match="tokenizer model 't5'"):
        import_gguf(gguf, out)
    _assert_untouched(out, {"keep.txt"})


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.6, 0.97])
def test_truncated_gguf(tmp_path: Path, keep: float) -> None:
    whole = make_tiny_gguf(tmp_path / "m.gguf", "qwen2").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: max(8, int(len(whole) * keep))])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ImportFormatError) as err:
        import_gguf(cut, out)
    assert "\n" not in err.value.message and "cut.gguf" in err.value.message
    _assert_untouched(out, set())


def test_truncated_smollm2(tmp_path: Path) -> None:
    cut = tmp_path / "half.gguf"
    with smollm2_gguf().open("rb") as fh:
        cut.write_bytes(fh.read(50_000_000))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ImportFormatError, match="truncated"):
        import_gguf(cut, out)
    _assert_untouched(out, set())


def test_garbage_and_wrong_version(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"this is not a model at all\n" * 40)
    assert not looks_like_gguf(garbage)
    assert looks_like_gguf(smollm2_gguf())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ImportFormatError, match="not a GGUF file"):
        import_gguf(garbage, out)
    future = tmp_path / "future.gguf"
    future.write_bytes(b"GGUF" + (99).to_bytes(4, "little") + b"\0" * 64)
    with pytest.raises(ImportFormatError, match="version 99"):
        import_gguf(future, out)
    _assert_untouched(out, set())
