"""embed: sentence embeddings through the one run pipeline, the same road as /v1/embeddings.

``prepare`` refuses a model that cannot embed before any weights are read; the runner is
loaded by the runtime's one pool and every batch runs on the engine thread, calling the same
``tokenize`` → ``embed_ids`` the server route calls, so the vectors are the server's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any

from mlxk.cli.commands import CommandResult, CommandSpec
from mlxk.config import Settings
from mlxk.errors import UsageError

BATCH = 64  # texts per engine call: long stdin streams in batches, never one huge request


def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an embedding model: name, fragment, name@rev or path")
    p.add_argument(
        "text", nargs="*", help="the text (all words are one input); '-' reads stdin, one per line"
    )


def _inputs(words: list[str]) -> Iterator[str]:
    """The texts: the words as one input, or stdin's non-empty lines (read lazily)."""
    if "-" not in words:
        text = " ".join(words)
        if text.strip():
            yield text
        return
    if words != ["-"]:
        raise UsageError("give the text as arguments or '-' for stdin, not both")
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        if text.strip():
            yield text


def _batches(texts: Iterable[str], size: int = BATCH) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(islice(it, size)):
        yield batch


def _embed_batch(rt: Any, prep: Any, texts: list[str]) -> tuple[Any, int]:
    """One batch on the engine thread with the model held: (N, D) unit vectors, tokens."""
    from mlxk.ops.run import start_embeddings

    (done,) = list(rt.events(lambda sink: start_embeddings(rt, prep, texts, sink)))
    return done.vectors, done.tokens


def _embed(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.ops.run import RunOptions, Runtime, prepare

    as_json = getattr(args, "json", False)
    batches = _batches(_inputs(list(args.text)))
    first = next(batches, None)
    if first is None:
        raise UsageError("no input: give text, or '-' to read one input per line from stdin")
    prep = prepare(settings, args.model, RunOptions(embeddings=True))
    rt = Runtime.local(settings)
    try:
        index, tokens, dimensions = 0, 0, 0
        embeddings: list[dict[str, Any]] = []
        for batch in chain([first], batches):
            vectors, used = _embed_batch(rt, prep, batch)
            tokens += used
            dimensions = int(vectors.shape[1])
            for vector in vectors:
                floats = [float(x) for x in vector]
                if as_json:
                    embeddings.append({"index": index, "embedding": floats})
                else:  # JSONL as each batch is done: a long stdin streams
                    record = {
                        "index": index, "embedding": floats, "model": args.model,
                        "dimensions": dimensions,
                    }  # fmt: skip
                    sys.stdout.write(json.dumps(record) + "\n")
                index += 1
            sys.stdout.flush()
    finally:
        rt.close()
    data = {
        "model": args.model, "dimensions": dimensions, "embeddings": embeddings,
        "usage": {"prompt_tokens": tokens},
    }  # fmt: skip
    return CommandResult(data, None)


COMMANDS = {
    "embed": CommandSpec(
        "sentence embeddings: one JSONL record per input ('-': stdin lines)", _embed_args, _embed
    ),
}
