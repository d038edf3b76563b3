"""bench, memmon, memplot: the benchmark toolchain (src/mlxk/bench)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlxk.cli.commands import CommandResult, CommandSpec, err, out
from mlxk.config import Settings
from mlxk.errors import UsageError

BENCH_SCENARIOS = ("text", "stt", "server", "realtime", "memory", "startup", "all")
DEFAULT_CLIPS_DIR = Path("tests/data/speech")

# -- bench -----------------------------------------------------------------------------------


def _bench_args(p: argparse.ArgumentParser) -> None:
    from mlxk.bench.randmodel import DTYPES, LLAMA_SHAPES

    p.add_argument("scenario", choices=BENCH_SCENARIOS, help="what to measure")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M",
        help="model name or path (repeatable; `all` routes Whisper to stt)",
    )
    p.add_argument("-o", "--output", type=Path, help="write the records here (JSONL)")
    p.add_argument(
        "--results-dir",
        type=Path,
        help="also write <scenario>-<device>.jsonl and .md per scenario here",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="discarded warm-up runs (default 1)")
    g = p.add_argument_group("text")
    g.add_argument(
        "--random-llama",
        choices=list(LLAMA_SHAPES),
        help="a random-weight llama of this size instead of --model",
    )
    g.add_argument("--dtype", choices=DTYPES, default="bf16", help="random llama weights")
    g.add_argument("--prompt-tokens", type=int, default=128)
    g.add_argument("--max-tokens", type=int, default=64, help="generated tokens (EOS ignored)")
    g.add_argument(
        "--bandwidth-gbs",
        type=float,
        help="memory bandwidth in GB/s: report decode as %% of the bandwidth bound",
    )
    g.add_argument(
        "--stock-anchor",
        action="store_true",
        help="also time stock mlx-lm in a fresh process (no mlxk setup)",
    )
    g = p.add_argument_group("stt")
    g.add_argument(
        "--clips",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help=f"audio clips (default {DEFAULT_CLIPS_DIR}/*.wav)",
    )
    g.add_argument("--ct2", type=Path, help="faster-whisper weights (default: the import source)")
    g.add_argument(
        "--ct2-part",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="further model.bin.partN of split CTranslate2 weights",
    )
    g.add_argument("--compute-types", default="float32,int8", help="faster-whisper types")
    g.add_argument("--language", help="language for both engines (default: detect)")
    g.add_argument("--threads", type=int, help="faster-whisper CPU threads (default: cores)")
    g = p.add_argument_group("server")
    g.add_argument("--clients", default="1,2,4,8", help="concurrency levels (default 1,2,4,8)")
    g.add_argument("--requests-per-client", type=int, default=2)
    g.add_argument("--no-anchor", action="store_true", help="skip mlx_lm.server")
    g.add_argument(
        "--scenario",
        dest="server_scenario",
        choices=("sweep", "mixed"),
        default="sweep",
        help="sweep: overhead + concurrency; mixed: chats beside a streamed transcription",
    )
    g.add_argument("--stt-model", default="whisper-tiny.en", help="mixed: the Whisper model")
    g.add_argument("--audio-seconds", type=float, default=60.0, help="mixed: clip length ≥ this")
    g = p.add_argument_group("realtime")
    g.add_argument(
        "--silence-ms",
        default="500,1000",
        help="realtime: server_vad silence_duration_ms settings (default 500,1000)",
    )
    g = p.add_argument_group("startup")
    g.add_argument(
        "--cache-scan-from",
        type=Path,
        help="convert benchmarks/cli_startup.py's JSONL into cache-scan records",
    )


def _clips(args: argparse.Namespace) -> tuple[Path, ...]:
    if args.clips:
        return tuple(args.clips)
    return tuple(sorted(DEFAULT_CLIPS_DIR.glob("*.wav")))


def _is_speech(settings: Settings, spec: str) -> bool:
    from mlxk.ops.catalog import build_record
    from mlxk.store.resolve import Resolver
    from mlxk.types import Backend

    info = build_record(Resolver(settings).resolve(spec).model).info
    return info.audio_backend is Backend.MLX_AUDIO


def _text(settings: Settings, ctx: Any, args: argparse.Namespace, spec: str | None) -> list[Any]:
    from mlxk.bench.text import TextBenchOptions, run_text

    opts = TextBenchOptions(
        model=spec, random_llama=args.random_llama, dtype=args.dtype,
        prompt_tokens=args.prompt_tokens, max_tokens=args.max_tokens, repeats=args.repeats,
        warmup=args.warmup, bandwidth_gbs=args.bandwidth_gbs, stock_anchor=args.stock_anchor,
    )  # fmt: skip
    return run_text(settings, ctx, opts)


def _stt(settings: Settings, ctx: Any, args: argparse.Namespace, spec: str) -> list[Any]:
    import os

    from mlxk.bench.stt import SttBenchOptions, run_stt

    opts = SttBenchOptions(
        model=spec, clips=_clips(args), ct2=args.ct2, ct2_parts=tuple(args.ct2_part),
        compute_types=tuple(c for c in args.compute_types.split(",") if c),
        repeats=args.repeats, warmup=args.warmup, language=args.language,
        threads=args.threads or os.cpu_count() or 1,
    )  # fmt: skip
    return run_stt(settings, ctx, opts)


def _server(settings: Settings, ctx: Any, args: argparse.Namespace, spec: str) -> list[Any]:
    from mlxk.bench.server import ServerBenchOptions, check_clients, run_server

    if args.server_scenario == "mixed":
        return _server_mixed(settings, ctx, args, spec)
    opts = ServerBenchOptions(
        model=spec, clients=check_clients(args.clients), max_tokens=args.max_tokens,
        requests_per_client=args.requests_per_client, anchor=not args.no_anchor,
        repeats=max(1, args.repeats // 2),
    )  # fmt: skip
    return run_server(settings, ctx, opts)


def _server_mixed(settings: Settings, ctx: Any, args: argparse.Namespace, spec: str) -> list[Any]:
    from mlxk.bench.mixed import MixedOptions, run_mixed
    from mlxk.bench.server import check_clients

    opts = MixedOptions(
        model=spec, stt_model=args.stt_model, clients=check_clients(args.clients),
        max_tokens=args.max_tokens, audio_seconds=args.audio_seconds, clips=_clips(args),
    )  # fmt: skip
    return run_mixed(settings, ctx, opts)


def _realtime(settings: Settings, ctx: Any, args: argparse.Namespace, spec: str) -> list[Any]:
    from mlxk.bench.realtime import RealtimeOptions, default_clips, run_realtime

    try:
        silences = tuple(int(x) for x in args.silence_ms.split(",") if x.strip())
    except ValueError as exc:
        raise UsageError(f"--silence-ms: comma-separated numbers, got '{args.silence_ms}'") from exc
    # the default order is longest clip first, as the server's Realtime test streams them
    clips = tuple(args.clips) or default_clips(DEFAULT_CLIPS_DIR)
    # a session is 25 s of real-time audio: --repeats counts sessions per silence setting
    opts = RealtimeOptions(model=spec, clips=clips, silences_ms=silences, repeats=args.repeats)
    return run_realtime(settings, ctx, opts)


def _memory(settings: Settings, ctx: Any, args: argparse.Namespace, spec: str) -> list[Any]:
    from mlxk.bench.memory import run_memory

    clips = _clips(args)
    return run_memory(settings, ctx, spec, clips[0] if clips else None, args.max_tokens)


def _startup(ctx: Any, args: argparse.Namespace) -> list[Any]:
    from mlxk.bench.startup import cache_scan_records, run_cold_start

    recs = run_cold_start(ctx, repeats=max(args.repeats, 20), warmup=args.warmup)
    if args.cache_scan_from:
        recs += cache_scan_records(ctx, args.cache_scan_from)
    return recs


def _plan(settings: Settings, args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(step, model) pairs to run, in order."""
    s = args.scenario
    if s == "startup":
        return [("startup", None)]
    if s == "text" and args.random_llama:
        return [("text", None)]
    if not args.model:
        raise UsageError(
            f"bench {s}: give --model M" + (" or --random-llama" if s == "text" else "")
        )
    if s != "all":
        return [(s, m) for m in args.model]
    steps: list[tuple[str, str | None]] = [("startup", None)]
    for m in args.model:
        kinds = ("stt", "memory") if _is_speech(settings, m) else ("text", "server", "memory")
        steps += [(k, m) for k in kinds]
    return steps


def _run_step(settings: Settings, ctx: Any, args: argparse.Namespace, step: str,
              spec: str | None) -> list[Any]:  # fmt: skip
    if step == "startup":
        return _startup(ctx, args)
    if step == "text":
        return _text(settings, ctx, args, spec)
    assert spec is not None
    runners = {"stt": _stt, "server": _server, "realtime": _realtime, "memory": _memory}
    return runners[step](settings, ctx, args, spec)


def _bench(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.bench.records import RunContext, write_jsonl
    from mlxk.bench.server import ServerUnavailable

    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("--repeats must be ≥ 1 and --warmup ≥ 0")
    ctx = RunContext(extra_versions=("faster-whisper", "ctranslate2"))
    records: list[Any] = []
    skipped: list[str] = []
    for step, spec in _plan(settings, args):
        err(f"[bench] {step}" + (f" · {spec}" if spec else ""))
        try:
            records += _run_step(settings, ctx, args, step, spec)
        except ServerUnavailable as exc:  # the server part is optional: say why, go on
            skipped.append(f"{step} {spec}: {exc.message}")
            err(f"[bench] skipped: {exc.message}")
    if args.output:
        write_jsonl(args.output, records)
    written = _write_results(records, args.results_dir)
    data = {"run_id": ctx.run_id, "records": records, "skipped": skipped,
            "output": str(args.output) if args.output else None, "results": written}  # fmt: skip
    return CommandResult(data, lambda: _bench_human(records, skipped))


def _write_results(records: list[Any], results_dir: Path | None) -> list[str]:
    if results_dir is None or not records:
        return []
    from mlxk.bench.report import write_results

    return [str(p) for p in write_results(records, results_dir)]


def _bench_human(records: list[Any], skipped: list[str]) -> None:
    from mlxk.bench.report import markdown
    from mlxk.bench.stt import rows_for_humans

    out(markdown(records, "mlxk bench"))
    for line in rows_for_humans(records):
        out(line)
    for s in skipped:
        err(f"skipped: {s}")


# -- memmon ----------------------------------------------------------------------------------


def _memmon_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interval", default="200ms", help="sampling interval (200ms, 0.5s)")
    p.add_argument("-o", "--output", type=Path, required=True, help="samples (JSONL)")
    p.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run and watch"
    )


def _memmon(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.bench.memmon import parse_interval, run_monitored, strip_separator

    result = run_monitored(strip_separator(args.cmd), args.output, parse_interval(args.interval))
    s = result.summary

    def human() -> None:  # stderr: stdout belongs to the monitored command
        gb = 1024**3
        err(
            f"[memmon] exit {s['exit_code']} after {s['duration_s']:.2f} s, {s['samples']} "
            f"samples; peak RSS {s['peak_rss_bytes'] / gb:.3f} GB, system used "
            f"{s['peak_sys_used_bytes'] / gb:.2f} GB, CPU {s['peak_cpu_pct']} % → {args.output}"
        )

    return CommandResult(s, human, result.exit_code)


# -- memplot ---------------------------------------------------------------------------------


def _memplot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("memmon", type=Path, help="a memmon JSONL file")
    p.add_argument(
        "--bench",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="bench records: their phases become markers (repeatable)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="plot.png or plot.html")


def _memplot(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.bench.plot import render

    for f in [args.memmon, *args.bench]:
        if not f.is_file():
            raise UsageError(f"File not found: {f}")
    path = render(args.memmon, args.output, args.bench)
    return CommandResult({"output": str(path)}, lambda: out(f"memplot: wrote {path}"))


COMMANDS = {
    "bench": CommandSpec("benchmarks: text, stt, server, realtime, memory, startup, all (JSONL)",
                         _bench_args, _bench),
    "memmon": CommandSpec("run a command and sample its memory, CPU and GPU (JSONL)",
                          _memmon_args, _memmon),
    "memplot": CommandSpec("draw a memmon file as a timeline (PNG or HTML)",
                           _memplot_args, _memplot),
}  # fmt: skip
