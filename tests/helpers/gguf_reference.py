"""Run by the reference environment (.venv-ref: torch + transformers, no MLX): greedy tokens
from transformers' own GGUF loader, printed as JSON. Kept out of the main environment because
importing torch there would slow every mlx-lm / mlx-audio import by seconds.

usage: python gguf_reference.py <file.gguf> <n_tokens> <comma-separated prompt ids>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    gguf, n, ids = Path(sys.argv[1]), int(sys.argv[2]), [int(i) for i in sys.argv[3].split(",")]
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
    print(json.dumps({"tokens": out[0, len(ids) :].tolist(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
