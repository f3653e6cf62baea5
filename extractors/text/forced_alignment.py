"""Word-level forced alignment of a known transcript: pocketsphinx (English) and Whisper (other languages).

pocketsphinx: the words are spelled as dictionary words (numbers -> words), words the CMU dictionary lacks get a
pronunciation from letter-to-sound rules, the text is aligned with `Decoder.set_align_text`, and each word's
confidence compares its acoustic score with a free phone loop over the same frames (1 = as good as the best
phone sequence). A transcript that does not match the audio scores far below the phone loop: the clip is then
marked failed, never spread uniformly.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from extractors.text.speech_recognition import SPEECH_SAMPLE_RATE, SpeechRecognizer
from extractors.text.words import spoken_forms

FRAME_RATE = 100          # pocketsphinx frames per second (its acoustic model's default)
_MIN_LOG = -745.0         # log of the smallest positive double: pocketsphinx reports scores as probabilities


class AlignmentError(Exception):
    """The transcript could not be aligned to the audio (the reason says why)."""


@dataclass
class WordAlignment:
    """Per display word: (start, end) seconds and a confidence in [0, 1], plus how it was obtained."""

    words: list[str]
    times: np.ndarray                 # (N, 2) float64 seconds
    confidence: np.ndarray            # (N,) float32
    method: str
    details: dict[str, Any] = field(default_factory=dict)


# ---- letter-to-sound rules for words the dictionary lacks (names, slang): ARPAbet, longest match first
_LTS_RULES = [
    ("tion", "SH AH N"), ("sion", "ZH AH N"), ("ough", "AO"), ("augh", "AO"), ("eigh", "EY"), ("igh", "AY"),
    ("tch", "CH"), ("sch", "S K"), ("dge", "JH"), ("ck", "K"), ("ch", "CH"), ("sh", "SH"), ("th", "TH"),
    ("ph", "F"), ("wh", "W"), ("qu", "K W"), ("ng", "NG"), ("gh", "G"), ("kn", "N"), ("wr", "R"),
    ("ee", "IY"), ("ea", "IY"), ("oo", "UW"), ("ou", "AW"), ("ow", "OW"), ("oi", "OY"), ("oy", "OY"),
    ("ai", "EY"), ("ay", "EY"), ("au", "AO"), ("aw", "AO"), ("ey", "EY"), ("ie", "IY"), ("ue", "UW"),
    ("er", "ER"), ("ir", "ER"), ("ur", "ER"), ("ar", "AA R"), ("or", "AO R"),
    ("a", "AE"), ("b", "B"), ("c", "K"), ("d", "D"), ("e", "EH"), ("f", "F"), ("g", "G"), ("h", "HH"),
    ("i", "IH"), ("j", "JH"), ("k", "K"), ("l", "L"), ("m", "M"), ("n", "N"), ("o", "AA"), ("p", "P"),
    ("q", "K"), ("r", "R"), ("s", "S"), ("t", "T"), ("u", "AH"), ("v", "V"), ("w", "W"), ("x", "K S"),
    ("y", "IY"), ("z", "Z"),
]
_LETTER_NAMES = {"a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY",
                 "h": "EY CH", "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N",
                 "o": "OW", "p": "P IY", "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW",
                 "v": "V IY", "w": "D AH B AH L Y UW", "x": "EH K S", "y": "W AY", "z": "Z IY"}


def letter_to_sound(word: str) -> str:
    """ARPAbet pronunciation of an unknown word from spelling rules (single letters are spelled out)."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        raise AlignmentError(f"word {word!r} has no letters to pronounce")
    if len(w) == 1:
        return _LETTER_NAMES[w]
    if w.endswith("e") and len(w) > 3 and w[-2] not in "aeiou":
        w = w[:-1]                                   # silent final e
    phones: list[str] = []
    i = 0
    while i < len(w):
        for graph, ph in _LTS_RULES:
            if w.startswith(graph, i):
                if graph == "c" and i + 1 < len(w) and w[i + 1] in "eiy":
                    ph = "S"
                if graph == "y" and i == 0:
                    ph = "Y"
                if not phones or phones[-1] != ph:   # doubled consonants are one sound
                    phones.append(ph)
                i += len(graph)
                break
    return " ".join(phones)


class PocketsphinxAligner:
    """English word alignment with pocketsphinx's packaged en-us model; one decoder per instance."""

    def __init__(self, min_confidence: float = 0.05, max_oov_fraction: float = 0.5) -> None:
        self.min_confidence = min_confidence
        self.max_oov_fraction = max_oov_fraction
        self._decoder: Any = None
        self._lock = threading.Lock()
        self._added: set[str] = set()

    def _dec(self) -> Any:
        if self._decoder is None:
            from pocketsphinx import Decoder, get_model_path

            self._decoder = Decoder(lm=None, loglevel="FATAL")
            self._decoder.add_allphone_file("_phone_loop", get_model_path("en-us/en-us-phone.lm.bin"))
        return self._decoder

    def _spell(self, words: list[str]) -> tuple[list[list[str]], list[str]]:
        """Dictionary words per display word, adding rule-based pronunciations for unknown ones."""
        dec = self._dec()
        spelled: list[list[str]] = []
        oov: list[str] = []
        for w in words:
            parts = []
            for p in spoken_forms(w):
                p = p.strip("'")
                if not p:
                    continue
                if dec.lookup_word(p) is None and p not in self._added:
                    dec.add_word(p, letter_to_sound(p), True)
                    self._added.add(p)
                    oov.append(p)
                elif p in self._added:
                    oov.append(p)
                parts.append(p)
            spelled.append(parts)
        return spelled, oov

    def _decode(self, pcm: bytes) -> list[tuple[str, int, int, float]]:
        dec = self._dec()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        if dec.hyp() is None:
            return []
        out = []
        for s in dec.seg():
            out.append((s.word, s.start_frame, s.end_frame,
                        math.log(s.ascore) if s.ascore > 0 else _MIN_LOG))
        return out

    def align(self, audio: np.ndarray, words: list[str]) -> WordAlignment:
        """Align display `words` to 16 kHz mono float32 audio; AlignmentError when it fails."""
        if not words:
            raise AlignmentError("empty transcript")
        with self._lock:
            spelled, oov = self._spell(words)
            flat = [p for parts in spelled for p in parts]
            if not flat:
                raise AlignmentError("transcript has no pronounceable words")
            if len(set(oov)) > self.max_oov_fraction * len(set(flat)):
                raise AlignmentError(f"{len(set(oov))} of {len(set(flat))} distinct words are not in the English "
                                     f"dictionary (not English?)")
            pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
            dec = self._dec()
            try:
                dec.set_align_text(" ".join(flat))
            except RuntimeError as exc:
                raise AlignmentError(f"pocketsphinx refused the text: {exc}") from None
            segs = self._decode(pcm)
            dec.activate_search("_phone_loop")
            loop = self._decode(pcm)
        aligned = [(re.sub(r"\(\d+\)$", "", w), a, b, s) for w, a, b, s in segs
                   if not (w.startswith("<") or w.startswith("[") or w.startswith("+"))]
        if [w for w, *_ in aligned] != flat:
            raise AlignmentError("pocketsphinx found no alignment of the transcript to the audio")
        n_frames = max([b for _, _, b, _ in segs] + [b for _, _, b, _ in loop] + [0]) + 1
        loop_frame = np.zeros(n_frames)
        for _, a, b, s in loop:
            loop_frame[a: b + 1] = s / max(1, b - a + 1)
        cum_loop = np.concatenate([[0.0], np.cumsum(loop_frame)])
        times = np.zeros((len(words), 2), dtype=np.float64)
        conf = np.zeros(len(words), dtype=np.float32)
        k = 0
        total_gap, total_frames = 0.0, 0
        for i, parts in enumerate(spelled):
            if not parts:      # a display word with nothing to say (e.g. a lone apostrophe): zero-length
                t = times[i - 1, 1] if i else 0.0
                times[i] = (t, t)
                continue
            mine = aligned[k: k + len(parts)]
            k += len(parts)
            a, b = mine[0][1], mine[-1][2]
            score = sum(s for *_, s in mine)
            ref = cum_loop[b + 1] - cum_loop[a]
            frames = b - a + 1
            gap = min(0.0, score - ref)
            total_gap += gap
            total_frames += frames
            times[i] = (a / FRAME_RATE, (b + 1) / FRAME_RATE)
            conf[i] = math.exp(gap / frames)
        mean_conf = math.exp(total_gap / max(1, total_frames))
        details = {"oov_words": sorted(set(oov)), "oov_method": "letter-to-sound rules",
                   "mean_confidence": mean_conf, "spoken_as": [" ".join(p) for p in spelled]}
        if mean_conf < self.min_confidence:
            raise AlignmentError(f"transcript does not match the audio (alignment confidence {mean_conf:.3f} "
                                 f"< {self.min_confidence})")
        return WordAlignment(words=list(words), times=times, confidence=conf, method="pocketsphinx",
                             details=details)


class WhisperAligner:
    """Any-language word alignment with Whisper's cross-attention (clips up to 30 s)."""

    def __init__(self, recognizer: SpeechRecognizer, min_confidence: float = 0.05) -> None:
        self.recognizer = recognizer
        self.min_confidence = min_confidence

    def align(self, audio: np.ndarray, words: list[str], language: str = "en") -> WordAlignment:
        """Align display `words` to 16 kHz audio; AlignmentError when it fails."""
        if not words:
            raise AlignmentError("empty transcript")
        clean = [re.sub(r"[^\w']", "", w) or w for w in words]
        try:
            got = self.recognizer.align(audio, clean, language)
        except ValueError as exc:
            raise AlignmentError(str(exc)) from None
        times = np.array([[w.start, w.end] for w in got], dtype=np.float64).reshape(-1, 2)
        conf = np.array([w.probability for w in got], dtype=np.float32)
        mean_conf = float(np.exp(np.mean(np.log(np.clip(conf, 1e-6, 1.0))))) if len(conf) else 0.0
        if mean_conf < self.min_confidence:
            raise AlignmentError(f"transcript does not match the audio (Whisper token probability {mean_conf:.3f} "
                                 f"< {self.min_confidence})")
        return WordAlignment(words=list(words), times=times, confidence=conf, method="whisper",
                             details={"mean_confidence": mean_conf})


def audio_seconds(audio: np.ndarray) -> float:
    """Duration of 16 kHz audio in seconds."""
    return len(audio) / SPEECH_SAMPLE_RATE
