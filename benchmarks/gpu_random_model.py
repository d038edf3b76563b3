"""Write a random-weight llama (1b/8b shapes, bf16 or 4-bit) as a model folder that `mlxk serve`
can load: config.json, model.safetensors and a word-level tokenizer covering the vocabulary.
Used for the GPU concurrency run, where no real weights can be fetched.

usage: python benchmarks/gpu_random_model.py OUT_DIR [1b|8b] [bf16|4bit]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlxk.bench.randmodel import build_llama, word_tokenizer

    out = Path(sys.argv[1])
    size = sys.argv[2] if len(sys.argv) > 2 else "1b"
    dtype = sys.argv[3] if len(sys.argv) > 3 else "bf16"
    model, config = build_llama(size, dtype)
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())), {"format": "mlx"})
    (out / "config.json").write_text(json.dumps({**config, "architectures": ["LlamaForCausalLM"]}))
    tok = word_tokenizer(config["vocab_size"])
    tok._tokenizer.save_pretrained(str(out))
    print(f"wrote {out} ({size}, {dtype})")


if __name__ == "__main__":
    main()
