"""CI smoke of the benchmark toolchain: memmon, memplot and `bench text` on real (tiny) work.

No timing assertions: speed is measured in benchmarks, never asserted in tests.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.conftest import REPO

if TYPE_CHECKING:
    from mlxk.bench.mixed import Run
    from mlxk.bench.realtime import Trace

SCHEMA = REPO / "benchmarks" / "schema" / "bench-record.v1.json"
ALLOC_MB = 50
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# allocate and touch 50 MB, hold it for half a second, exit with the code given
ALLOC = (
    "import sys, time\n"
    f"b = bytearray({ALLOC_MB} * 1024 * 1024)\n"
    "for i in range(0, len(b), 4096): b[i] = 1\n"
    "time.sleep(0.5)\n"
    "sys.exit(int(sys.argv[1]))\n"
)


def bench_cli(args: list[str], env: dict[str, str] | None = None,
              **kw: object) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The bench commands as `mlxk ...`, run the way the GPU machine runs them (`python -m`)."""
    return subprocess.run(
        [sys.executable, "-m", "mlxk", *args],
        env=env, capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def memmon_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("memmon") / "m.jsonl"
    res = bench_cli(
        ["memmon", "-i", "50ms", "-o", str(out), "--", sys.executable, "-c", ALLOC, "0"]
    )
    assert res.returncode == 0, res.stderr
    return out


def test_memmon_records_samples_and_a_summary_with_the_peak(memmon_file: Path) -> None:
    rows = read_lines(memmon_file)
    header, samples, summary = rows[0], rows[1:-1], rows[-1]
    assert header["type"] == "header" and header["schema"] == "mlxk.memmon.v1"
    assert header["cmd"][0] == sys.executable
    assert len(samples) >= 3 and all(s["type"] == "sample" for s in samples)
    assert all(s["rss_bytes"] > 0 and s["sys_total_bytes"] > 0 for s in samples)
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert summary["type"] == "summary" and summary["exit_code"] == 0
    assert summary["peak_rss_bytes"] >= ALLOC_MB * 1024 * 1024
    assert summary["peak_rss_bytes"] == max(s["rss_bytes"] for s in samples)
    assert summary["samples"] == len(samples)


def test_memmon_exits_with_the_childs_code(tmp_path: Path) -> None:
    out = tmp_path / "fail.jsonl"
    res = bench_cli(["memmon", "-o", str(out), "--", sys.executable, "-c", "raise SystemExit(7)"])
    assert res.returncode == 7
    assert read_lines(out)[-1]["exit_code"] == 7


def test_memmon_forwards_sigterm_to_the_child(tmp_path: Path) -> None:
    out = tmp_path / "term.jsonl"
    marker = tmp_path / "started"
    code = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlxk", "memmon", "-o", str(out), "--",
         sys.executable, "-c", code],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    summary = read_lines(out)[-1]
    assert summary["signal"] == signal.SIGTERM and summary["exit_code"] == 128 + signal.SIGTERM


def test_memmon_refuses_a_missing_command(tmp_path: Path) -> None:
    res = bench_cli(["memmon", "-o", str(tmp_path / "x.jsonl"), "--", "no-such-command-xyz"])
    assert res.returncode == 2 and "command not found" in res.stderr


def test_memplot_draws_png_and_self_contained_html(memmon_file: Path, tmp_path: Path) -> None:
    png, page = tmp_path / "m.png", tmp_path / "m.html"
    assert bench_cli(["memplot", str(memmon_file), "-o", str(png)]).returncode == 0
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 600 and height >= 300
    assert bench_cli(["memplot", str(memmon_file), "-o", str(page)]).returncode == 0
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "peak_rss_bytes" in html
    assert "<script" not in html and "http://cdn" not in html and "https://cdn" not in html


def test_memplot_refuses_other_formats(memmon_file: Path, tmp_path: Path) -> None:
    res = bench_cli(["memplot", str(memmon_file), "-o", str(tmp_path / "m.gif")])
    assert res.returncode == 2 and ".png or .html" in res.stderr


def test_bench_text_on_a_tiny_model_writes_valid_records(
    tmp_path: Path, env: dict[str, str]
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from tests.helpers.textmodels import make_tiny_qwen2

    model = make_tiny_qwen2(tmp_path / "tiny-qwen2")
    # an unquantized HF layout counts as PyTorch unless its README says MLX
    (model / "README.md").write_text("---\nlibrary_name: mlx\n---\n")
    out = tmp_path / "b.jsonl"
    args = ["bench", "text", "--model", str(model), "--repeats", "2", "--prompt-tokens", "16",
            "--max-tokens", "8", "--bandwidth-gbs", "10", "-o", str(out), "--results-dir",
            str(tmp_path / "results")]  # fmt: skip
    res = bench_cli(args, env)
    assert res.returncode == 0, res.stderr
    records = read_lines(out)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for rec in records:
        validator.validate(rec)
    subject, anchor = records[0], records[1]
    assert subject["engine"] == "mlxk" and subject["role"] == "subject"
    assert anchor["role"] == "anchor" and subject["anchor"]["name"] == anchor["engine"]
    assert subject["workload"]["max_tokens"] == 8 and subject["stats"]["decode_tok_s"]["n"] == 2
    assert subject["phases"]["load_s"] > 0 and subject["throughput"]["decode_tok_s"] > 0
    assert subject["quality"]["greedy_equal_to_anchor"] is True
    assert subject["extra"]["roofline"]["bandwidth_gbs"] == 10
    assert (tmp_path / "results" / "text-decode-cpu.md").read_text().startswith("# text-decode")


def test_bench_text_with_a_random_llama_reports_the_bandwidth_bound(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    args = [
        "bench",
        "text",
        "--random-llama",
        "tiny",
        "--dtype",
        "4bit",
        "--repeats",
        "1",
        "--prompt-tokens",
        "8",
        "--max-tokens",
        "4",
        "--bandwidth-gbs",
        "100",
        "-o",
        str(out),
    ]
    res = bench_cli(args)
    assert res.returncode == 0, res.stderr
    subject = read_lines(out)[0]
    assert subject["model"]["quantization"] == {"group_size": 64, "bits": 4}
    roof = subject["extra"]["roofline"]
    assert roof["bytes_per_token"] == subject["memory"]["param_bytes"] > 0
    assert 0 < roof["pct_of_bound"] < 100


# --- server-mixed: the pure parts (no server, no timing thresholds) ---------------------------


def _mixed_run(tmp_path: Path) -> Run:
    from mlxk.bench.mixed import MixedOptions, Run
    from mlxk.bench.server import Server

    server = Server("mlxk serve", "smollm2", 0, proc=None, log=None, start_s=1.5)  # type: ignore[arg-type]
    opts = MixedOptions(model="smollm2", clients=(2,), max_tokens=4)
    return Run(server, opts, tmp_path / "speech-60s.wav", 62.0, {"name": "smollm2"},
               {"name": "whisper-tiny.en"})  # fmt: skip


def test_gap_statistics_from_timestamps() -> None:
    from mlxk.bench.mixed import gap_stats, gaps

    assert gaps([]) == [] and gaps([5.0]) == []
    assert gaps([0.0, 0.1, 0.3, 1.3]) == pytest.approx([0.1, 0.2, 1.0])
    stats = gap_stats(gaps([0.0, 0.1, 0.3, 1.3]))
    assert stats["n"] == 3 and stats["median"] == pytest.approx(0.2)
    assert stats["max"] == pytest.approx(1.0) and stats["min"] == pytest.approx(0.1)
    assert 0.2 < stats["p95"] <= 1.0
    assert gap_stats([])["n"] == 0 and gap_stats([])["p95"] is None


def test_transcript_spread_and_first_tokens_before_it_ended() -> None:
    from mlxk.bench.mixed import Trace, before_done, transcript_figures

    tr = Trace(start=10.0, deltas=(12.0, 12.0, 16.0, 18.0), done=20.0)
    figs = transcript_figures(tr, audio_s=40.0)
    assert figs["first_delta_s"] == 2.0 and figs["total_s"] == 10.0
    assert figs["first_delta_over_total"] == 0.2 and figs["delta_span_over_total"] == 0.6
    assert figs["deltas"] == 4 and figs["rtf"] == 0.25 and figs["delta_times_s"][-1] == 8.0
    silent = transcript_figures(Trace(start=0.0, deltas=(), done=1.0), audio_s=1.0)
    assert silent["first_delta_s"] is None and silent["delta_span_over_total"] is None
    early, late = Trace(11.0, (13.0, 13.5), 14.0), Trace(11.0, (21.0,), 22.0)
    assert before_done([early, late, Trace(11.0, (), 12.0)], tr) == 1


def test_speech_clip_joins_the_clips_in_turn_until_long_enough(tmp_path: Path) -> None:
    import wave

    from mlxk.bench.mixed import speech_clip

    clips = []
    for name, value, seconds in (("a.wav", 1, 1.0), ("b.wav", 2, 2.0)):
        path = tmp_path / name
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(value.to_bytes(2, "little") * int(16000 * seconds))
        clips.append(path)
    out = tmp_path / "joined.wav"
    audio_s = speech_clip(clips, 5.0, out)
    assert 5.0 <= audio_s < 8.0  # a, b, a, b with short pauses: the first length ≥ 5 s
    with wave.open(str(out), "rb") as w:
        assert w.getframerate() == 16000 and w.getnframes() == round(audio_s * 16000)


def test_mixed_record_is_valid_and_renders_as_a_markdown_row(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from mlxk.bench.mixed import PHASE_MIXED, Trace, chat_record
    from mlxk.bench.records import RunContext
    from mlxk.bench.report import markdown

    tr = Trace(start=0.0, deltas=(2.0, 6.0, 9.0), done=10.0, text="a man said")
    chats = [Trace(1.0, (1.5, 1.6, 1.8, 4.0), 4.1, tokens=4),
             Trace(1.0, (11.0, 11.1), 11.2, tokens=2)]  # fmt: skip
    ctx = RunContext(machine={"cpu": "test", "cores": 2, "ram_bytes": 1, "os": "x", "gpu": None})
    rec = chat_record(ctx, _mixed_run(tmp_path), PHASE_MIXED, chats, 10.2, tr)
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(rec)
    assert rec["scenario"] == "server-mixed" and rec["workload"]["clients"] == 2
    assert rec["stats"]["gap_s"]["n"] == 4 and rec["stats"]["gap_s"]["max"] == pytest.approx(2.2)
    assert rec["extra"]["first_token_before_transcript_done"] == 1
    text = markdown([rec], "server-mixed (cpu)")
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    row = next(line for line in text.splitlines() if line.startswith("| smollm2"))
    assert "gap p95 ms" in header and "1st token before transcript done" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == PHASE_MIXED and cells[2] == "2" and cells[5] == "2200"  # gap max, ms
    assert "1/2" in cells and "0.20" in cells and "0.70" in cells  # first/total, span/total


# --- realtime: the pure parts (a scripted session, no server, no timing thresholds) ----------


def _realtime_trace() -> Trace:
    """Appends every 0.1 s from t = 100; one turn: speech 0.3–2.0 s of audio, 500 ms VAD
    silence, two partials, the final's remainder, then completed at t = 103.0."""
    from mlxk.bench.realtime import PREFIX, Trace

    ev: list[tuple[float, dict[str, object]]] = [
        (100.45, {"type": "input_audio_buffer.speech_started", "item_id": "i1",
                  "audio_start_ms": 300}),
        (101.30, {"type": PREFIX + "delta", "item_id": "i1", "delta": "a man"}),
        (102.05, {"type": PREFIX + "delta", "item_id": "i1", "delta": " said"}),
        (102.52, {"type": "input_audio_buffer.speech_stopped", "item_id": "i1",
                  "audio_end_ms": 2000}),
        (102.52, {"type": "input_audio_buffer.committed", "item_id": "i1"}),
        (102.90, {"type": PREFIX + "delta", "item_id": "i1", "delta": " to the universe"}),
        (103.00, {"type": PREFIX + "completed", "item_id": "i1",
                  "transcript": "A man said to the universe"}),
    ]  # fmt: skip
    return Trace(sends=[100.0 + i / 10 for i in range(40)], events=ev)


def test_realtime_delays_from_a_scripted_session() -> None:
    from mlxk.bench.realtime import pooled, send_at, sent_before, turn_figures

    sends = [0.0, 0.1, 0.2]
    assert send_at(sends, 0) == 0.0 and send_at(sends, 100) == 0.0 and send_at(sends, 101) == 0.1
    assert send_at(sends, 10_000) == 0.2 and sent_before(sends, 0.15) == 0.1
    (turn,) = turn_figures(_realtime_trace(), silence_ms=500)
    # end of speech: audio at 2000 ms went out with append 19 (t = 101.9); + 500 ms → 102.4
    assert turn["eos_to_final_s"] == pytest.approx(1.1)
    assert turn["after_silence_s"] == pytest.approx(0.6)
    assert turn["stopped_to_final_s"] == pytest.approx(0.48)
    # partials: the delta after the commit is the final's remainder, not a partial
    assert turn["partials"] == 2 and turn["first_partial_s"] == pytest.approx(0.85)
    assert turn["first_partial_from_speech_s"] == pytest.approx(1.1)  # audio 300 ms: t = 100.2
    # lag bounds: 101.30 − newest send before speech_started (100.4); 102.05 − 101.3
    assert turn["partial_lag_s"] == pytest.approx([0.9, 0.75])
    stats = pooled([turn, {"partial_lag_s": [2.0]}, {}], "partial_lag_s")
    assert stats["n"] == 3 and stats["max"] == 2.0 and stats["median"] == pytest.approx(0.9)
    assert pooled([{}], "eos_to_final_s")["n"] == 0


def test_realtime_record_is_valid_and_renders_as_a_markdown_row(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from mlxk.bench.realtime import session_record, turn_figures
    from mlxk.bench.records import RunContext
    from mlxk.bench.report import markdown
    from mlxk.bench.server import Server

    clip = tmp_path / "a_man.wav"
    (tmp_path / "transcripts.tsv").write_text(
        "file\tduration_s\treference_text\na_man.wav\t2.0\tA MAN SAID TO THE UNIVERSE\n")  # fmt: skip
    turns = turn_figures(_realtime_trace(), 500)
    server = Server("mlxk serve", "whisper-tiny.en", 0, proc=None, log=None, start_s=1.5)  # type: ignore[arg-type]
    ctx = RunContext(machine={"cpu": "test", "cores": 2, "ram_bytes": 1, "os": "x", "gpu": None})
    audio = {"clips": (clip,), "audio_s": 4.0, "speed": 1.0, "sessions": [turns]}
    rec = session_record(ctx, {"name": "whisper-tiny.en"}, server, 500, turns, audio)
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(rec)
    assert rec["scenario"] == "realtime" and rec["workload"]["silence_ms"] == 500
    assert rec["quality"]["wer"] == 0.0 and rec["stats"]["after_silence_s"]["n"] == 1
    text = markdown([rec], "realtime (cpu)")
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    row = next(line for line in text.splitlines() if line.startswith("| whisper-tiny.en"))
    assert "EOS + silence → final s p50" in header and "partial lag ≤ s max" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:8] == ["500", "1", "1.10", "1.10", "0.60", "0.60", "no"]
    assert cells[14:16] == ["2", "0.000"]  # partials, WER
