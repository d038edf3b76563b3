"""`mlxk run <whisper> --audio` as a user runs it: real Whisper weights, real clips."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
from tests.conftest import RealModels, run_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "speech"
SHORT = "a_man_said_to_the_universe_sir_i_exist"
LONG = "having_returned_to_the_royal_cavern"
BOUND = {SHORT: 0.05, LONG: 0.15}


def _reference() -> dict[str, tuple[str, float]]:
    rows = (DATA / "transcripts.tsv").read_text().strip().splitlines()[1:]
    return {r.split("\t")[0][:-4]: (r.split("\t")[2], float(r.split("\t")[1])) for r in rows}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(ref: str, hyp: str) -> float:
    return float(jiwer.wer(_norm(ref), _norm(hyp)))


@pytest.fixture(scope="module", autouse=True)
def _tiny_en(real_models: RealModels) -> None:
    real_models.path("whisper-tiny.en")


@pytest.fixture(scope="module")
def stereo_44k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sox") / f"{SHORT}_44k_stereo.wav"
    subprocess.run(
        ["sox", str(DATA / f"{SHORT}.wav"), "-r", "44100", "-c", "2", str(out)], check=True
    )
    return out


@pytest.mark.parametrize("ext", ["wav", "mp3"])
def test_tiny_en_transcribes_both_clips_within_bounds(real_models: RealModels, ext: str) -> None:
    ref = _reference()
    files = [str(DATA / f"{SHORT}.{ext}"), str(DATA / f"{LONG}.{ext}")]
    res = run_cli(["run", "whisper-tiny.en", "--audio", *files, "--json"], real_models.env)
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)["data"]["results"]
    assert [r["file"] for r in results] == [Path(f).name for f in files]  # labelled, in order
    for r in results:
        stem = r["file"].rsplit(".", 1)[0]
        assert wer(ref[stem][0], r["text"]) <= BOUND[stem], (stem, r["text"])
        assert abs(r["duration"] - ref[stem][1]) < 0.1


def test_44k_stereo_reencoding(real_models: RealModels, stereo_44k: Path) -> None:
    res = run_cli(["run", "whisper-tiny.en", "--audio", str(stereo_44k)], real_models.env)
    assert res.returncode == 0, res.stderr
    assert wer(_reference()[SHORT][0], res.stdout) <= BOUND[SHORT]


def _cue_times(text: str, sep: str) -> list[tuple[float, float]]:
    pat = rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d) --> (\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)"
    out = []
    for m in re.finditer(pat, text):
        g = [int(x) for x in m.groups()]
        out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000))
    return out


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_are_valid_and_inside_the_clip(real_models: RealModels, fmt: str) -> None:
    res = run_cli(["run", "whisper-tiny.en", "--audio", str(DATA / f"{LONG}.wav"), "--format", fmt], real_models.env)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n")
    else:
        assert text.lstrip().startswith("1\n")
    cues = _cue_times(text, "," if fmt == "srt" else ".")
    assert len(cues) >= 1
    duration = _reference()[LONG][1]
    last = 0.0
    for start, end in cues:
        assert last <= start <= end <= duration + 0.01
        last = end


def test_verbose_json_has_segments_and_words(real_models: RealModels) -> None:
    res = run_cli(
        ["run", "whisper-tiny.en", "--audio", str(DATA / f"{SHORT}.wav"), "--format", "verbose_json"],
        real_models.env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["language"] == "en" and abs(data["duration"] - 4.65) < 0.05
    assert data["segments"] and all(s["end"] >= s["start"] for s in data["segments"])
    words = data["words"]
    assert len(words) >= 8
    assert all(0 <= w["start"] <= w["end"] <= 4.7 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)


REFUSAL_PROBE = """
import sys
from mlxk.cli.main import main
code = main(sys.argv[1:])
loaded = sorted(m for m in ("mlx_audio", "mlx_lm", "mlx_vlm", "mlx.core") if m in sys.modules)
sys.stderr.write("LOADED=" + ",".join(loaded) + "\\n")
raise SystemExit(code)
"""


def _refused(real_models: RealModels, args: list[str]) -> tuple[int, str, list[str]]:
    res = subprocess.run(
        [sys.executable, "-c", REFUSAL_PROBE, *args], env=real_models.env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("LOADED="))
    return res.returncode, res.stderr, [m for m in line[7:].split(",") if m]


def test_translate_on_tiny_en_is_refused_before_loading(real_models: RealModels) -> None:
    real_models.path("whisper-base")  # a capable model to be named in the refusal
    code, err, loaded = _refused(
        real_models, ["run", "whisper-tiny.en", "--audio", str(DATA / f"{SHORT}.wav"), "--translate"]
    )
    assert code == 1 and loaded == []
    assert "translation" in err and "whisper-base" in err


def test_translate_runs_on_whisper_base(real_models: RealModels) -> None:
    real_models.path("whisper-base")
    shown = json.loads(run_cli(["show", "whisper-base", "--json"], real_models.env).stdout)["data"]
    assert "audio-translate-en" in shown["model"]["capabilities"]
    assert shown["backends"] == {"audio": "mlx-audio"} and shown["model"]["runtime_compatible"]
    res = run_cli(["run", "whisper-base", "--audio", str(DATA / f"{SHORT}.wav"), "--translate", "--json"], real_models.env)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)["data"]["results"][0]
    assert result["task"] == "translate"
    assert wer(_reference()[SHORT][0], result["text"]) <= 0.2


def test_base_transcribes_within_bounds(real_models: RealModels) -> None:
    res = run_cli(["run", "whisper-base", "--audio", str(DATA / f"{LONG}.wav")], real_models.env)
    assert res.returncode == 0, res.stderr
    assert wer(_reference()[LONG][0], res.stdout) <= BOUND[LONG]


def test_text_prompt_to_whisper_and_audio_to_smollm2_are_refused(real_models: RealModels) -> None:
    real_models.path("smollm2")
    code, err, loaded = _refused(real_models, ["run", "whisper-tiny.en", "hello there"])
    assert code == 1 and loaded == [] and "--audio" in err
    code, err, loaded = _refused(real_models, ["run", "smollm2", "--audio", str(DATA / f"{SHORT}.wav")])
    assert code == 1 and loaded == [] and "audio" in err and "whisper-tiny.en" in err


def test_bad_audio_files_are_reported_one_line_each(real_models: RealModels, tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    good = DATA / f"{SHORT}.wav"
    res = run_cli(["run", "whisper-tiny.en", "--audio", str(empty), str(good), str(text)], real_models.env)
    assert res.returncode == 1  # some inputs failed — never a silent failure
    assert "Traceback" not in res.stderr
    assert "empty.wav" in res.stderr and "notes.wav" in res.stderr
    assert "universe" in res.stdout.lower()


def test_memory_gate_refuses_with_figures(real_models: RealModels) -> None:
    real_models.path("smollm2")
    env = real_models.env | {"MLXK_MEMORY_LIMIT": str(50 * 1024 * 1024)}
    res = subprocess.run(
        [sys.executable, "-c", REFUSAL_PROBE, "run", "smollm2", "hi"], env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 1
    assert re.search(r"needs about [\d.]+ GB .* only [\d.]+ GB is available", res.stderr), res.stderr
    loaded = next(ln for ln in res.stderr.splitlines() if ln.startswith("LOADED="))
    assert "mlx_lm" not in loaded
