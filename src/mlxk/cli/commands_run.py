"""run: text, images and audio through the one run pipeline (ops/run.py)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlxk.cli.commands import CommandResult, CommandSpec, err, out
from mlxk.config import Settings
from mlxk.errors import UsageError
from mlxk.formats.transcripts import FORMATS, render, verbose_dict
from mlxk.types import Backend, GenerationChunk


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="name, fragment, name@rev or path")
    p.add_argument("prompt_words", nargs="*", metavar="prompt", help="the prompt; '-' reads stdin")
    p.add_argument("--prompt", help="prompt text (for Whisper: an initial prompt)")
    p.add_argument("--image", nargs="+", action="extend", type=Path, default=[], metavar="FILE")
    p.add_argument("--audio", nargs="+", action="extend", type=Path, default=[], metavar="FILE")
    p.add_argument("--language", help="source language hint for speech (e.g. en, de)")
    p.add_argument("--translate", nargs="?", const="en", help="translate speech to English")
    p.add_argument("--format", choices=FORMATS, default="text", help="transcript format")
    p.add_argument("--word-timestamps", action="store_true", help="word times in verbose_json")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--temperature", type=float, help="0.7 text, 0.0 Whisper, 0.2 omni audio")
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--repetition-penalty", type=float, default=1.1)
    p.add_argument("--max-tokens", type=int, help="default: the model's context length")
    p.add_argument("--chunk", type=int, default=1, help="images per vision batch (1-5)")
    p.add_argument("--no-stream", action="store_true", help="print the answer at the end")
    p.add_argument("--no-chat-template", action="store_true", help="send the raw prompt")
    p.add_argument("--verbose", action="store_true", help="device, BLAS, timings")


def _prompt_text(args: argparse.Namespace) -> str | None:
    words = list(args.prompt_words)
    stdin_text = None
    if "-" in words:
        words.remove("-")
        stdin_text = sys.stdin.read().rstrip("\n")
    typed = args.prompt if args.prompt is not None else (" ".join(words) or None)
    parts = [p for p in (stdin_text, typed) if p]
    return "\n\n".join(parts) if parts else None


def _options(args: argparse.Namespace, prompt: str | None, backend: Backend | None) -> Any:
    from mlxk.ops.run import RunOptions

    whisper = backend is Backend.MLX_AUDIO
    return RunOptions(
        prompt=None if whisper else prompt,
        images=tuple(args.image), audio=tuple(args.audio), system=args.system,
        language=args.language, translate=bool(args.translate),
        initial_prompt=prompt if whisper else None, temperature=args.temperature,
        top_p=args.top_p, repetition_penalty=args.repetition_penalty,
        max_tokens=args.max_tokens, use_chat_template=not args.no_chat_template,
        word_timestamps=args.word_timestamps or args.format == "verbose_json", chunk=args.chunk,
    )  # fmt: skip


def _validate(args: argparse.Namespace) -> None:
    if args.translate not in (None, "en"):
        raise UsageError(f"--translate only supports English ('en'); got '{args.translate}'")
    if not 1 <= args.chunk <= 5:
        raise UsageError("--chunk must be between 1 and 5")
    for f in [*args.image, *args.audio]:
        if not f.is_file():
            raise UsageError(f"File not found: {f}")


def _run(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.ops.run import prepare

    _validate(args)
    prompt = _prompt_text(args)
    as_json = getattr(args, "json", False)
    prep = prepare(settings, args.model, _options(args, prompt, None))
    opts = _options(args, prompt, prep.backend)
    if args.verbose:
        _verbose_header(settings, prep)
    if prep.backend is Backend.MLX_AUDIO:
        return _transcribe(settings, prep, opts, args, as_json)
    if prompt is None and not args.image and not args.audio:
        if as_json:
            raise UsageError("Interactive mode is not compatible with --json; give a prompt")
        return _interactive(settings, prep, opts)
    return _generate(settings, prep, opts, args, as_json, prompt)


def _verbose_header(settings: Settings, prep: Any) -> None:
    from mlxk.backends.platform import platform_report, setup_platform

    setup_platform(settings)
    rep = platform_report()
    err(f"[mlxk] model {prep.name} via {prep.backend.value}; device {rep.get('device')}")
    err(f"[mlxk] BLAS: {rep.get('blas') or 'none'}")


def _stream_for(settings: Settings, prep: Any, opts: Any) -> Iterator[GenerationChunk]:
    from mlxk.ops.run import stream_text, stream_vision

    fn = stream_vision if prep.backend is Backend.MLX_VLM else stream_text
    return fn(settings, prep, opts)


def _generate(
    settings: Settings, prep: Any, opts: Any, args: argparse.Namespace, as_json: bool,
    prompt: str | None,
) -> CommandResult:  # fmt: skip
    live = sys.stdout.isatty() and not args.no_stream and not as_json
    start = time.perf_counter()
    text, tokens, reason = _consume(_stream_for(settings, prep, opts), live)
    elapsed = time.perf_counter() - start
    if args.verbose:
        err(f"[mlxk] {tokens} tokens in {elapsed:.2f} s ({tokens / max(elapsed, 1e-9):.1f} tok/s)")
    data = {
        "model": args.model, "prompt": prompt, "response": text,
        "tokens_generated": tokens, "generation_time_s": round(elapsed, 3),
        "finish_reason": reason, "backend": prep.backend.value,
    }  # fmt: skip
    if prep.backend is Backend.MLX_VLM:
        from mlxk.ops.run import last_vision_request

        data["request"] = request = last_vision_request()
        if args.verbose and request:
            err(f"[mlxk] prompt {request['prompt']!r}, temperature {request['temperature']}")
            err(f"[mlxk] audio windows: {len(request['windows'])}")
    return CommandResult(data, None if live else (lambda: out(text)))


def _consume(chunks: Iterator[GenerationChunk], live: bool) -> tuple[str, int, str | None]:
    """Print as it comes when live; Ctrl-C stops generation and keeps what was produced."""
    parts: list[str] = []
    tokens, reason = 0, None
    try:
        for chunk in chunks:
            parts.append(chunk.text)
            tokens = max(tokens, chunk.token_count)
            reason = chunk.finish_reason or reason
            if live:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
    except KeyboardInterrupt:
        reason = "interrupted"
        err("\n[Generation interrupted by user]")
    if live:
        sys.stdout.write("\n")
    return "".join(parts), tokens, reason


def _transcribe(
    settings: Settings, prep: Any, opts: Any, args: argparse.Namespace, as_json: bool
) -> CommandResult:
    from mlxk.ops.run import transcribe

    results = list(transcribe(settings, prep, opts))
    many = len(results) > 1
    records = []
    for r in results:
        rec: dict[str, Any] = {"file": r.source, "error": r.error}
        if r.transcript is not None:
            rec |= verbose_dict(r.transcript)
        records.append(rec)
    data = {"model": args.model, "backend": prep.backend.value, "results": records}
    if many or not results or results[0].transcript is None:
        data["response"] = "\n".join(r.transcript.text for r in results if r.transcript)
    else:
        data["response"] = results[0].transcript.text

    def human() -> None:
        for r in results:
            if many:
                out(f"==> {r.source} <==")
            if r.transcript is None:
                err(f"run: Error: {r.source}: {r.error}")
            else:
                sys.stdout.write(render(r.transcript, args.format))
            if many:
                out()

    failed = any(r.transcript is None for r in results)
    return CommandResult(data, human, 1 if failed else 0)


def _interactive(settings: Settings, prep: Any, opts: Any) -> CommandResult:
    from dataclasses import replace

    history: list[dict[str, Any]] = []
    err("Starting interactive chat. Type 'exit' or 'quit' to end.")
    while True:
        try:
            line = input("You: ")
        except (EOFError, KeyboardInterrupt):
            err("\nGoodbye!")
            break
        if line.strip().lower() in ("exit", "quit", "q"):
            err("Goodbye!")
            break
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        sys.stdout.write("Assistant: ")
        chunks = _stream_for(settings, prep, replace(opts, messages=list(history), prompt=None))
        text, _tokens, _reason = _consume(chunks, True)
        history.append({"role": "assistant", "content": text})
    return CommandResult({"turns": len(history) // 2}, None)


COMMANDS = {
    "run": CommandSpec("run a model: text, --image, --audio (interactive without a prompt)", _run_args, _run),
}  # fmt: skip
