"""run: text, images and audio through the one run pipeline (ops/run.py)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlxk.cli.commands import CommandResult, CommandSpec, err, out
from mlxk.config import Settings
from mlxk.errors import UsageError
from mlxk.formats.transcripts import FORMATS, LIVE_FORMATS, CueWriter, render, verbose_dict
from mlxk.types import Started


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
    p.add_argument("--live", action="store_true",
                   help="with --audio -: transcribe stdin (WAV or s16le 16 kHz mono) as it arrives, a line per turn")  # fmt: skip
    p.add_argument("--mic", action="store_true",
                   help="live: record from the default input device (PortAudio via sounddevice)")  # fmt: skip
    p.add_argument("--no-vad", action="store_true",
                   help="keep Whisper's segments where voice activity detection hears no speech")  # fmt: skip
    p.add_argument("--system", help="system prompt")
    p.add_argument("--temperature", type=float, help="0.7 text, 0.0 Whisper, 0.2 omni audio")
    p.add_argument("--top-p", type=float, help="default 0.9 (or the model's own)")
    p.add_argument("--repetition-penalty", type=float, help="default 1.1 (or the model's own)")
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


def _options(args: argparse.Namespace, prompt: str | None) -> Any:
    from mlxk.ops.run import RunOptions

    # The prompt is Whisper's initial prompt or a generative model's prompt; ops/run gives
    # each backend the one it takes.
    return RunOptions(
        prompt=prompt, images=tuple(args.image), audio=tuple(args.audio), system=args.system,
        language=args.language, translate=bool(args.translate), initial_prompt=prompt,
        temperature=args.temperature, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, max_tokens=args.max_tokens,
        use_chat_template=not args.no_chat_template,
        word_timestamps=args.word_timestamps or args.format == "verbose_json", chunk=args.chunk,
        vad=not args.no_vad,
    )  # fmt: skip


def _validate(args: argparse.Namespace) -> None:
    if args.translate not in (None, "en"):
        raise UsageError(f"--translate only supports English ('en'); got '{args.translate}'")
    if not 1 <= args.chunk <= 5:
        raise UsageError("--chunk must be between 1 and 5")
    if args.mic:
        if args.audio:
            raise UsageError("--mic records the microphone: give no --audio")
        args.audio, args.live = [Path("-")], True
    if args.live and [str(a) for a in args.audio] != ["-"]:
        raise UsageError(
            "--live reads audio from stdin: give --audio - (e.g. ffmpeg … -f s16le -ar 16000 -ac 1 - |)"
        )
    for f in [*args.image, *args.audio]:
        if str(f) != "-" and not f.is_file():
            raise UsageError(f"File not found: {f}")


def _run(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.ops.run import Runtime, prepare

    _validate(args)
    prompt = _prompt_text(args)
    as_json = getattr(args, "json", False)
    opts = _options(args, prompt)
    prep = prepare(settings, args.model, opts)
    interactive = prompt is None and not args.image and not args.audio
    if interactive and not prep.transcribes and as_json:
        raise UsageError("Interactive mode is not compatible with --json; give a prompt")
    if args.verbose:
        _verbose_header(settings, prep)
    rt = Runtime.local(settings)
    try:
        if args.live:
            return _live(rt, prep, opts, as_json, mic=args.mic)
        if prep.transcribes:
            return _transcribe(rt, prep, opts, args, as_json)
        if interactive:
            return _interactive(rt, prep, opts)
        return _generate(rt, prep, opts, args, as_json, prompt)
    finally:
        rt.close()


def _verbose_header(settings: Settings, prep: Any) -> None:
    from mlxk.backends.platform import platform_report, setup_platform

    setup_platform(settings)
    rep = platform_report()
    err(f"[mlxk] model {prep.name} via {prep.backend.value}; device {rep.get('device')}")
    err(f"[mlxk] BLAS: {rep.get('blas') or 'none'}")


def _chat_events(rt: Any, prep: Any, opts: Any) -> Iterator[Any]:
    from mlxk.ops.run import start_chat

    events: Iterator[Any] = rt.events(lambda sink: start_chat(rt, prep, opts, sink))
    return events


def _generate(
    rt: Any, prep: Any, opts: Any, args: argparse.Namespace, as_json: bool, prompt: str | None,
) -> CommandResult:  # fmt: skip
    live = sys.stdout.isatty() and not args.no_stream and not as_json
    start = time.perf_counter()
    run = _consume(_chat_events(rt, prep, opts), live)
    elapsed = time.perf_counter() - start
    if args.verbose:
        tps = run.tokens / max(elapsed, 1e-9)
        err(f"[mlxk] {run.tokens} tokens in {elapsed:.2f} s ({tps:.1f} tok/s)")
    data: dict[str, Any] = {
        "model": args.model, "prompt": prompt, "response": run.text,
        "tokens_generated": run.tokens, "generation_time_s": round(elapsed, 3),
        "finish_reason": run.reason, "backend": prep.backend.value,
    }  # fmt: skip
    started = run.started
    if started is not None and args.verbose:
        from mlxk.ops.run import describe

        err(f"[mlxk] run: {describe(started)}")
    if started is not None and started.sampling is not None:
        data["sampling"] = asdict(started.sampling)
    if started is not None and started.detail is not None:  # vision: what mlx-vlm was given
        data["request"] = request = asdict(started.detail)  # type: ignore[call-overload]
        if args.verbose:
            err(f"[mlxk] prompt {request['prompt']!r}, temperature {request['temperature']}")
            err(f"[mlxk] audio windows: {len(request['windows'])}")
    return CommandResult(data, None if live else (lambda: out(run.text)))


@dataclass
class _Consumed:
    text: str
    tokens: int
    reason: str | None
    started: Started | None


def _consume(events: Iterator[Any], live: bool) -> _Consumed:
    """Print as it comes when live; Ctrl-C stops generation and keeps what was produced."""
    parts: list[str] = []
    tokens, reason, started = 0, None, None
    try:
        for event in events:
            if isinstance(event, Started):
                started = event
                continue
            parts.append(event.text)
            tokens = max(tokens, event.token_count)
            reason = event.finish_reason or reason
            if live:
                sys.stdout.write(event.text)
                sys.stdout.flush()
    except KeyboardInterrupt:
        reason = "interrupted"
        err("\n[Generation interrupted by user]")
    if live:
        sys.stdout.write("\n")
    return _Consumed("".join(parts), tokens, reason, started)


def _transcribe(
    rt: Any, prep: Any, opts: Any, args: argparse.Namespace, as_json: bool
) -> CommandResult:
    live = sys.stdout.isatty() and not as_json and args.format in LIVE_FORMATS
    many = len(opts.audio) > 1
    results = [
        _transcribe_one(rt, prep, opts, path, args.format, live, many) for path in opts.audio
    ]
    records = []
    for r in results:
        rec: dict[str, Any] = {"file": r.source, "error": r.error}
        if r.transcript is not None:
            rec |= verbose_dict(r.transcript)
        records.append(rec)
    data = {"model": args.model, "backend": prep.backend.value, "results": records}
    data["response"] = "\n".join(r.transcript.text for r in results if r.transcript)

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
    return CommandResult(data, None if live else human, 1 if failed else 0)


def _transcribe_one(
    rt: Any, prep: Any, opts: Any, path: Path, fmt: str, live: bool, many: bool
) -> Any:
    """One file; on a TTY its cues are printed as each window is decoded."""
    from mlxk.errors import MlxkError
    from mlxk.ops.run import FileTranscript, fold_transcript, transcribe_events

    if live and many:
        out(f"==> {path.name} <==")
    cues = CueWriter(fmt, sys.stdout) if live else None
    started, events = None, []
    try:
        for event in transcribe_events(rt, prep, opts, path):
            if isinstance(event, Started):
                started = event
                continue
            events.append(event)
            if cues is not None:
                cues.add(event)
    except MlxkError as exc:
        if live:
            err(f"run: Error: {path.name}: {exc.message}")
        return FileTranscript(path.name, None, exc.message)
    assert started is not None
    transcript = fold_transcript(started, events, opts)
    if cues is not None:
        cues.finish(transcript)
    if live and many:
        out()
    return FileTranscript(path.name, transcript)


def _live(rt: Any, prep: Any, opts: Any, as_json: bool, *, mic: bool = False) -> CommandResult:
    """Turns of the audio on stdin, printed as each completes (Silero VAD cuts the turns)."""
    from dataclasses import replace

    from mlxk.ops.live import TurnDetection, live_transcripts, pcm_chunks
    from mlxk.ops.run import transcript_text

    one = replace(opts, audio=())
    turns: list[str] = []
    chunks = _microphone() if mic else pcm_chunks(sys.stdin.buffer)
    detect = TurnDetection()  # 500 ms of silence ends a turn, as OpenAI's server_vad
    tty = sys.stdout.isatty() and not as_json

    def show_partial(text: str) -> None:  # the open turn so far, rewritten in place
        sys.stdout.write("\r\x1b[K" + text)
        sys.stdout.flush()

    partial = show_partial if tty else None
    decode = lambda s: transcript_text(rt, prep, one, s)  # noqa: E731
    try:
        for text in live_transcripts(decode, chunks, detect, partial):
            if text:
                turns.append(text)
                if not as_json:
                    sys.stdout.write(("\r\x1b[K" if tty else "") + text + "\n")
                    sys.stdout.flush()
    except KeyboardInterrupt:
        err("\n[stopped]")
    data = {"model": prep.name, "backend": prep.backend.value, "turns": turns,
            "response": "\n".join(turns)}  # fmt: skip
    return CommandResult(data, None)


def _microphone() -> Iterator[Any]:
    """16 kHz mono blocks from the default input device, as they are recorded."""
    import queue

    import numpy as np

    from mlxk.errors import BackendUnavailableError

    try:
        import sounddevice

        sounddevice.check_input_settings(samplerate=16000, channels=1, dtype="int16")
    except Exception as exc:  # missing package, no PortAudio, no input device
        raise BackendUnavailableError(
            f"--mic needs an input device and PortAudio through the sounddevice package "
            f"(pip install sounddevice): {exc}. Or pipe audio in: "
            "arecord -f S16_LE -r 16000 -c 1 | mlxk run <model> --audio - --live"
        ) from None
    blocks: queue.Queue[Any] = queue.Queue()
    stream = sounddevice.InputStream(
        samplerate=16000, channels=1, dtype="int16", blocksize=1600,
        callback=lambda data, _frames, _time, _status: blocks.put(data.copy()),
    )  # fmt: skip
    with stream:
        err("[mlxk] recording from the microphone; Ctrl-C stops")
        while True:
            yield blocks.get()[:, 0].astype(np.float32) / 32768.0


def _interactive(rt: Any, prep: Any, opts: Any) -> CommandResult:
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
        turn = replace(opts, messages=list(history), prompt=None)
        run = _consume(_chat_events(rt, prep, turn), True)
        history.append({"role": "assistant", "content": run.text})
    return CommandResult({"turns": len(history) // 2}, None)


COMMANDS = {
    "run": CommandSpec("run a model: text, --image, --audio (interactive without a prompt)", _run_args, _run),
}  # fmt: skip
