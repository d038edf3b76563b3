"""Run by the reference environment (.venv-ref: torch + transformers, no MLX) to get what
transformers itself makes of a file, printed as one JSON line. Kept out of the main environment
because torch there slows every mlx-lm / mlx-audio import by seconds.

usage:
  reference_transformers.py generate <file.gguf> <n_tokens> <comma-separated prompt ids>
  reference_transformers.py tokenize <file.gguf> <json: {"texts": [...], "chat": [...]}>
  reference_transformers.py tensor <model dir> <tensor name>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def generate(gguf: Path, n: int, ids: list[int]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
    return {"tokens": out[0, len(ids) :].tolist(), "torch": torch.__version__}


def tokenize(gguf: Path, request: dict[str, Any]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    chat = tok.apply_chat_template(request["chat"], add_generation_prompt=True, return_dict=False)
    return {"texts": [tok.encode(t) for t in request["texts"]], "chat": list(chat)}


def tensor(model_dir: Path, name: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {"values": model.state_dict()[name].flatten().tolist()}


def main() -> None:
    cmd, *args = sys.argv[1:]
    if cmd == "generate":
        out = generate(Path(args[0]), int(args[1]), [int(i) for i in args[2].split(",")])
    elif cmd == "tokenize":
        out = tokenize(Path(args[0]), json.loads(args[1]))
    else:
        out = tensor(Path(args[0]), args[1])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
