"""Translation augmentation (multilingual paper, Section 5.1): each transcript in a second language, and its embedding.

Two extractors, cached like any feature (their keys hold their config and version, and the key of what they read):
  translation      the translated transcript (meta "text", "words"): the label file's `text_translation` column
                   when the row has one, else a `Translator` - a MarianMT / NLLB model named in
                   `extraction.options.translation.model` (a local directory, or a hub name for users with a model
                   hub). A row with neither is cached as missing, with the reason.
  translated_text  the translation through the text encoder (the same tensors as `text`: token embeddings "fixed",
                   "mask", "word_index", ...) plus its word-level means "words" / "words_mask" (word-aligned models).
Both run on media rows (the transcript extractor's words) and on transcript-only rows (the label's text).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem
from extractors.text.encoder import TextEncoderConfig, TextEncoderExtractor, token_word_means
from extractors.text.words import split_words
from pipeline.cache import STATUS_MISSING
from pipeline.config import ConfigBase, ConfigError
from pipeline.labels import TRANSLATION_COLUMN

MODEL_KEY = "extraction.options.translation.model"
BOTH_WAYS = (f"give the translations in the labels' {TRANSLATION_COLUMN} column, or set {MODEL_KEY} to a MarianMT / "
             "NLLB model (a local directory, or a hub name when online)")


class TranslationModelUnavailable(ConfigError):
    """The configured translation model cannot be loaded."""


class Translator(ABC):
    """Turns sentences of one language into another's."""

    name: str

    @abstractmethod
    def translate(self, texts: Sequence[str]) -> list[str]:
        """The translation of each text, in order."""


_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be reached (HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def load_seq2seq(name: str, device: torch.device, source_language: str = "") -> tuple[Any, Any]:
    """(tokenizer, model) of a translation model: `from_pretrained` of a local directory or a hub name (offline:
    the local Hugging Face cache only); loaded once per process and device. One-line error naming the setting."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    key = (name, str(device), source_language)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        local = Path(name).expanduser().is_dir()
        offline = hub_offline()
        kwargs: dict[str, Any] = {"local_files_only": True} if local or offline else {}
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            tok_kwargs = {"src_lang": source_language} if source_language else {}
            with warnings.catch_warnings():   # Marian recommends the optional sacremoses; it is not needed
                warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
                tokenizer = AutoTokenizer.from_pretrained(str(Path(name).expanduser()) if local else name,
                                                          **tok_kwargs, **kwargs)
            model = AutoModelForSeq2SeqLM.from_pretrained(str(Path(name).expanduser()) if local else name, **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            where = ("a local directory" if local else "offline (HF_HUB_OFFLINE is set), not in the local Hugging Face "
                     "cache" if offline else "not found on the hub or in the local cache")
            detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise TranslationModelUnavailable(
                f"translation model {name!r} cannot be loaded ({where}: {detail}); set {MODEL_KEY} to a local "
                f"MarianMT / NLLB directory, or give the translations in the labels' {TRANSLATION_COLUMN} "
                "column") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        model.eval().to(device)
        _LOADED[key] = (tokenizer, model)
        return tokenizer, model


class PretrainedTranslator(Translator):
    """A sequence-to-sequence translation model (MarianMT: one language pair; NLLB: codes such as fra_Latn)."""

    def __init__(self, name: str, device: torch.device, source_language: str = "", target_language: str = "",
                 num_beams: int = 4, max_new_tokens: int = 256, batch_size: int = 16) -> None:
        self.name = name
        self.device = device
        self.tokenizer, self.model = load_seq2seq(name, device, source_language)
        self.generate_kwargs: dict[str, Any] = {"num_beams": num_beams, "max_new_tokens": max_new_tokens,
                                                "do_sample": False}
        if target_language:
            bos = self.tokenizer.convert_tokens_to_ids(target_language)
            if bos is None or bos == self.tokenizer.unk_token_id:
                raise ConfigError(f"extraction.options.translation.target_language {target_language!r} is not a "
                                  f"language code of {name!r} (NLLB codes look like fra_Latn, spa_Latn)")
            self.generate_kwargs["forced_bos_token_id"] = bos
        self.batch_size = max(1, batch_size)

    @torch.inference_mode()
    def translate(self, texts: Sequence[str]) -> list[str]:
        """Greedy or beam-search translations, `batch_size` texts per generate call."""
        out: list[str] = []
        for b in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[b: b + self.batch_size]), return_tensors="pt", padding=True,
                                 truncation=True)
            ids = self.model.generate(**{k: v.to(self.device) for k, v in enc.items()}, **self.generate_kwargs)
            out.extend(t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return out


@dataclass
class TranslationConfig(ConfigBase):
    """Where each transcript's translation comes from: the labels' column, else this translation model."""

    model: str = ""                  # MarianMT / NLLB: a local directory or a hub name; "" = the labels' column only
    source_language: str = ""        # NLLB-style language codes (e.g. fra_Latn -> spa_Latn); a Marian model has one
    target_language: str = ""        # pair and needs neither
    num_beams: int = 4
    max_new_tokens: int = 256
    batch_size: int = 16


def transcript_text(item: MediaItem) -> str | Exception:
    """The text to translate: a transcript-only item's own text, else the transcript extractor's words."""
    if item.info.container == "text":
        return str(item.extras.get("transcript", "")).strip()
    entry = item.extras.get("upstream", {}).get("transcript")
    if entry is None:
        return ExtractionFailed("the transcript extractor produced nothing for this item")
    if entry.status == STATUS_MISSING:
        return FeatureUnavailable(f"no transcript: {entry.meta.get('reason', '')}")
    return " ".join(entry.meta.get("words", []))


class TranslationExtractor(Extractor):
    """The transcript in a second language: the labels' `text_translation`, else the configured model's output."""

    name = "translation"
    version = "1"
    modality = "text"
    Config = TranslationConfig
    requires = frozenset()
    depends_on = ("transcript",)
    text_items = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._translator: Translator | None = None

    def media_settings(self) -> dict:
        return {}

    def key_inputs(self, item: MediaItem) -> dict[str, Any]:
        """A translation given in the labels is an input: editing it renews the entry."""
        given = str(item.extras.get("translation", "")).strip()
        return {"translation_sha256": hashlib.sha256(given.encode("utf-8")).hexdigest()} if given else {}

    @property
    def translator(self) -> Translator:
        """The configured translation model (loaded on first use)."""
        if self._translator is None:
            c: TranslationConfig = self.config
            self._translator = PretrainedTranslator(c.model, self.device, c.source_language, c.target_language,
                                                    c.num_beams, c.max_new_tokens, c.batch_size)
        return self._translator

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: TranslationConfig = self.config
        results: list[Features | Exception | None] = [None] * len(batch)
        to_model: list[tuple[int, str]] = []
        for i, item in enumerate(batch):
            given = str(item.extras.get("translation", "")).strip()
            if given:
                results[i] = self._features(given, "labels")
                continue
            source = transcript_text(item)
            if isinstance(source, Exception):
                results[i] = source
            elif not source:
                results[i] = FeatureUnavailable("empty transcript: nothing to translate")
            elif not c.model:
                results[i] = FeatureUnavailable(f"no translation for this row: {BOTH_WAYS}")
            else:
                to_model.append((i, source))
        if to_model:
            for (i, _), text in zip(to_model, self.translator.translate([t for _, t in to_model])):
                results[i] = self._features(text, "model")
        return results  # type: ignore[return-value]

    def _features(self, text: str, source: str) -> Features | Exception:
        words = split_words(text)
        if not words:
            return FeatureUnavailable(f"the translation ({source}) is empty")
        return Features(tensors={"length": torch.tensor([len(words)], dtype=torch.int64)},
                        meta={"text": text, "words": words, "source": source,
                              "translator": self.config.model if source == "model" else TRANSLATION_COLUMN})


@dataclass
class TranslatedTextConfig(TextEncoderConfig):
    """The text encoder's settings for the translations (keep them equal to `text`'s), and the word-level length."""

    word_seq_len: int = 50           # words kept in "words" (the word-aligned extractor's seq_len)


class TranslatedTextExtractor(TextEncoderExtractor):
    """The translated transcript through the text encoder, token level and word level."""

    name = "translated_text"
    version = "1"
    Config = TranslatedTextConfig
    depends_on = ("translation",)

    def _words(self, item: MediaItem) -> list[str] | Exception:
        entry = item.extras.get("upstream", {}).get("translation")
        if entry is None:
            return ExtractionFailed("the translation extractor produced nothing for this item")
        if entry.status == STATUS_MISSING:
            return FeatureUnavailable(f"no translation: {entry.meta.get('reason', '')}")
        return list(entry.meta.get("words", []))

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: TranslatedTextConfig = self.config
        if c.word_seq_len < 1:
            raise ConfigError("extraction.options.translated_text.word_seq_len must be at least 1")
        results = super().extract(batch)
        for feats in results:
            if isinstance(feats, Features):
                n = min(int(feats.meta["n_words"]), c.word_seq_len)
                means, present = token_word_means(feats.tensors["fixed"], feats.tensors["word_index"], n)
                words = torch.zeros(c.word_seq_len, means.shape[1])
                words[:n] = means
                words_mask = torch.zeros(c.word_seq_len)
                words_mask[:n] = present
                feats.tensors.update(words=words, words_mask=words_mask)
        return results
