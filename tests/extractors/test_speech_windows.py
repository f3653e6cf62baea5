"""Windowed speech recognition (extractors/speech_windows.py, transcript.asr_window_seconds) on real speech."""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from extractors.registry import build_extractor
from extractors.text.speech_recognition import SPEECH_SAMPLE_RATE
from extractors.text.speech_windows import iter_speech_windows, quietest_cut
from pipeline.config import ConfigError
from pipeline.media import MediaConfig, iter_audio, probe, read_audio
from tests.helpers.paths import ROOT

SAMPLES = ROOT / "sample_videos" / "astro_front"
sys.path.insert(0, str(ROOT / "benchmarks"))

WINDOW = {"sources": ["asr"], "asr_window_seconds": 5.0, "asr_cut_search_seconds": 2.0}


def _norm(words: list[str]) -> list[str]:
    return [re.sub(r"[^a-z0-9']", "", w.lower()) for w in words]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 15 s of real (espeak) speech: the four astro_front sample clips joined by stream copy."""
    if not SAMPLES.is_dir():
        pytest.skip("sample_videos/ is not present")
    from make_long_video import make_long_video

    out = tmp_path_factory.mktemp("windowed") / "joined.mp4"
    make_long_video([SAMPLES], 15.0, out)
    return out


def test_windows_cover_the_stream_and_cut_in_the_pause() -> None:
    sr = 1000
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, 12 * sr).astype(np.float32)
    audio[4200:4300] = 0.0                           # a pause inside the first window's search region (3-5 s)
    chunks = [audio[i: i + 700] for i in range(0, audio.size, 700)]
    wins = list(iter_speech_windows(chunks, sr, 5.0, 2.0, 0.02))
    assert np.array_equal(np.concatenate([w for _, w in wins]), audio)     # no gap, no overlap
    assert all(w.size <= 5 * sr for _, w in wins)
    assert 4200 <= wins[0][1].size <= 4300 and wins[1][0] == pytest.approx(wins[0][1].size / sr)
    assert [s for s, _ in wins] == sorted(s for s, _ in wins)
    (only,) = list(iter_speech_windows([audio[:3000]], sr, 5.0, 2.0, 0.02))  # shorter than one window
    assert only[0] == 0.0 and np.array_equal(only[1], audio[:3000])
    with pytest.raises(ValueError, match="need 0 < frame"):
        list(iter_speech_windows(chunks, sr, 5.0, 6.0, 0.02))
    assert quietest_cut(audio, 5000, 2000, 20) in range(4200, 4300)


def test_bad_window_settings_name_the_keys() -> None:
    with pytest.raises(ConfigError, match="asr_cut_search_seconds < asr_window_seconds"):
        build_extractor("transcript", {"asr_window_seconds": 2.0, "asr_cut_search_seconds": 5.0}, MediaConfig(), "cpu")


def test_windowed_recognition_matches_whole_clip_recognition(long_clip: Path) -> None:
    ex = build_extractor("transcript", WINDOW, MediaConfig(), "cpu")
    n_windows = sum(1 for _ in iter_speech_windows(iter_audio(long_clip, SPEECH_SAMPLE_RATE, 5.0),
                                                   SPEECH_SAMPLE_RATE, 5.0, 2.0, 0.02))
    assert n_windows >= 3
    tr, seconds = ex.recognise_windows(str(long_clip), None)
    whole = ex.asr.transcribe(read_audio(long_clip, SPEECH_SAMPLE_RATE), None)
    assert seconds == pytest.approx(probe(long_clip).duration, abs=0.6) and len(tr.words) <= ex.config.max_words
    assert tr.language == "en"
    got, ref = _norm([w.word for w in tr.words]), _norm([w.word for w in whole.words])
    match = difflib.SequenceMatcher(None, got, ref)
    assert match.ratio() >= 0.75, (got, ref)
    times = np.array([[w.start, w.end] for w in tr.words])
    assert np.all(np.diff(times[:, 0]) >= 0) and np.all(times[:, 1] >= times[:, 0])
    assert times[0, 0] >= 0 and times[-1, 1] <= seconds + 1e-6
    # words found by both sit at the same place in time (window offsets applied)
    pairs = [(i + k, j + k) for i, j, n in match.get_matching_blocks() for k in range(n)]
    assert len(pairs) >= 0.75 * len(ref)
    # Whisper's word times wobble by a few hundred ms with the audio around a word (and with the CPU's int8 kernels:
    # on an AMD EPYC one word moved 0.85 s, on the Xeon none over 0.6 s); a wrong window offset moves words by seconds
    diffs = np.array([abs(tr.words[i].start - whole.words[j].start) for i, j in pairs])
    assert np.median(diffs) < 0.1 and np.mean(diffs < 0.5) >= 0.9 and diffs.max() < 1.5, diffs.round(2)


def test_clip_shorter_than_a_window_is_recognised_as_before() -> None:
    clip = SAMPLES / "01.mp4"
    if not clip.is_file():
        pytest.skip("sample_videos/ is not present")
    ex = build_extractor("transcript", {"sources": ["asr"]}, MediaConfig(), "cpu")
    tr, _ = ex.recognise_windows(str(clip), None)
    whole = ex.asr.transcribe(read_audio(clip, SPEECH_SAMPLE_RATE), None)
    assert [(w.word, w.start, w.end) for w in tr.words] == [(w.word, w.start, w.end) for w in whole.words]
    assert tr.segments == whole.segments and len(tr.words) >= 3


def test_extractor_stores_windowed_words_with_times(long_clip: Path) -> None:
    from extractors.base import MediaItem
    from pipeline.cache import hash_file

    ex = build_extractor("transcript", {**WINDOW, "max_words": 10}, MediaConfig(), "cpu")
    item = MediaItem(path=str(long_clip), media_hash=hash_file(long_clip), info=probe(long_clip), extras={})
    (f,) = ex.extract([item])
    assert f.meta["source"] == "asr" and f.meta["truncated"] is True and f.meta["n_words"] == 10
    wt = f.tensors["word_times"].numpy()
    assert wt.shape == (10, 2) and np.all(np.diff(wt[:, 0]) >= 0)
    assert f.meta["audio_seconds"] == pytest.approx(probe(long_clip).duration, abs=0.6)
    assert ex.version == "4"
