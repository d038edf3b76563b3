"""pull, clone-from-hub and push: mlxk against a Hugging Face hub (or anything speaking its API).

huggingface_hub does what it is good at — repo info, file URLs and metadata, its error classes,
the cache layout and lock conventions, uploads — while the byte transfer is our own
(``mlxk.ops.download``) so pulls resume across processes and every file is verified before
the snapshot appears. JSON fields follow mlx-knife's ``pull``/``clone``/``push``.

``client``: the hub API, its errors as mlxk errors, repo names; ``pull``: hub → HF cache;
``clone``: hub → workspace through a private cache; ``push``: workspace → private hub repo.
"""
