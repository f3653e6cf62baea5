"""Word timings on real recorded speech: pocketsphinx forced alignment vs Whisper (recognition and alignment)."""

from __future__ import annotations

import difflib
import re

import numpy as np
import pytest

from extractors.text.forced_alignment import AlignmentError, PocketsphinxAligner, WhisperAligner, letter_to_sound
from extractors.text.speech_recognition import SPEECH_SAMPLE_RATE, SpeechRecognizer
from extractors.text.words import split_words
from pipeline.media import read_audio
from tests.helpers.text_speech import FIRST_WORDS, TWO_CITIES_TEXT, two_cities_wav

CUT_SECONDS = 13.3   # inside the pause after "incredulity," (word 36)
MAX_MEDIAN_GAP_S = 0.15


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return read_audio(two_cities_wav(), SPEECH_SAMPLE_RATE)


@pytest.fixture(scope="module")
def ps_full(speech: np.ndarray):
    return PocketsphinxAligner().align(speech, split_words(TWO_CITIES_TEXT))


@pytest.fixture(scope="module")
def recognizer() -> SpeechRecognizer:
    return SpeechRecognizer()


def _norm(w: str) -> str:
    return re.sub(r"[^a-z']", "", w.lower())


def test_pocketsphinx_aligns_every_word_in_order(ps_full, speech):
    words = split_words(TWO_CITIES_TEXT)
    assert ps_full.method == "pocketsphinx"
    assert ps_full.times.shape == (len(words), 2) and ps_full.confidence.shape == (len(words),)
    assert np.all(ps_full.times[:, 1] > ps_full.times[:, 0])
    assert np.all(np.diff(ps_full.times[:, 0]) > 0)                 # monotonic
    assert ps_full.times[-1, 1] <= len(speech) / SPEECH_SAMPLE_RATE + 0.01
    assert 0.8 < ps_full.times[0, 0] < 1.6                          # "It" after the opening silence
    assert ps_full.details["mean_confidence"] > 0.1
    assert np.all((ps_full.confidence > 0) & (ps_full.confidence <= 1))


def test_pocketsphinx_matches_whisper_word_timestamps(ps_full, speech, recognizer):
    tr = recognizer.transcribe(speech)
    words = split_words(TWO_CITIES_TEXT)
    a = [_norm(w) for w in words]
    b = [_norm(w.word) for w in tr.words]
    pairs = []
    for blk in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        pairs += [(blk.a + k, blk.b + k) for k in range(blk.size)]
    assert len(pairs) > 0.8 * len(words)                            # Whisper heard nearly the same words
    gaps = [abs(ps_full.times[i, j] - (tr.words[k].start, tr.words[k].end)[j]) for i, k in pairs for j in (0, 1)]
    assert np.median(gaps) < MAX_MEDIAN_GAP_S


def test_whisper_alignment_matches_pocketsphinx(speech, recognizer):
    cut = speech[: int(CUT_SECONDS * SPEECH_SAMPLE_RATE)]
    words = split_words(TWO_CITIES_TEXT)[:FIRST_WORDS]
    wh = WhisperAligner(recognizer).align(cut, words)
    ps = PocketsphinxAligner().align(cut, words)
    assert wh.method == "whisper" and wh.times.shape == (len(words), 2)
    assert np.median(np.abs(wh.times - ps.times)) < MAX_MEDIAN_GAP_S
    assert wh.details["mean_confidence"] > 0.5


def test_mismatched_transcript_is_marked_failed_not_spread(speech, recognizer):
    cut = speech[: int(CUT_SECONDS * SPEECH_SAMPLE_RATE)]
    wrong = split_words("The cat sat on the mat and then went home to eat some fish for dinner tonight")
    with pytest.raises(AlignmentError, match="does not match the audio|no alignment"):
        PocketsphinxAligner().align(cut, wrong)
    with pytest.raises(AlignmentError, match="does not match the audio"):
        WhisperAligner(recognizer, min_confidence=0.15).align(cut, wrong)


def test_words_missing_from_the_dictionary_get_rule_pronunciations(speech):
    cut = speech[: int(CUT_SECONDS * SPEECH_SAMPLE_RATE)]
    words = split_words(TWO_CITIES_TEXT)[:FIRST_WORDS]
    words[3] = "Bestorix"            # a name no dictionary has, in place of "best"
    al = PocketsphinxAligner().align(cut, words)
    assert al.details["oov_words"] == ["bestorix"]
    assert letter_to_sound("bestorix") == "B EH S T AO R IH K S"
    assert al.times[3, 0] == pytest.approx(1.67, abs=0.15)


def test_whisper_alignment_refuses_more_than_30_seconds(speech, recognizer):
    with pytest.raises(AlignmentError, match="up to 30 s"):
        WhisperAligner(recognizer).align(speech, split_words(TWO_CITIES_TEXT))


def test_silence_has_no_alignment():
    silence = np.zeros(3 * SPEECH_SAMPLE_RATE, dtype=np.float32)
    with pytest.raises(AlignmentError):
        PocketsphinxAligner().align(silence, ["hello", "world"])


def test_empty_transcript_is_refused():
    with pytest.raises(AlignmentError, match="empty transcript"):
        PocketsphinxAligner().align(np.zeros(1000, dtype=np.float32), [])
