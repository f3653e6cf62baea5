"""The table of SentiFlow's extractors (name -> module:class), and building one from its options.

Adding an extractor: write one module with an `Extractor` subclass and add one line to `EXTRACTORS`.
"""

from __future__ import annotations

from typing import Any

import torch

from extractors.base import Extractor
from pipeline.media import MediaConfig
from pipeline.registry import Registry

EXTRACTORS: Registry[Extractor] = Registry("extractor", {
    "logmel": "extractors.audio.logmel:LogMelExtractor",
    "acoustic": "extractors.audio.acoustic:AcousticExtractor",
    "tonal": "extractors.audio.tonal:TonalExtractor",
    "opensmile": "extractors.audio.opensmile:OpenSmileExtractor",
    "face": "extractors.visual.face:FaceExtractor",
    "fer": "extractors.visual.fer:FerExtractor",
    "transcript": "extractors.text.transcript:TranscriptExtractor",
    "text": "extractors.text.encoder:TextEncoderExtractor",
    "translation": "extractors.text.translation:TranslationExtractor",          # translation augmentation
    "translated_text": "extractors.text.translation:TranslatedTextExtractor",
    "aligned": "extractors.aligned:WordAlignedExtractor",
    "imported_text": "extractors.imported:ImportedText",      # filled by `sentiflow import`, keyed by row id
    "imported_audio": "extractors.imported:ImportedAudio",
    "imported_visual": "extractors.imported:ImportedVisual",
})


def get_extractor_class(name: str) -> type[Extractor]:
    """The extractor class registered under `name`, or a ConfigError listing the known names."""
    return EXTRACTORS.get(name)


def build_extractor(name: str, options: dict[str, Any] | None, media: MediaConfig,
                    device: str | torch.device = "cpu") -> Extractor:
    """Instantiate a registered extractor from its option dict."""
    cls = get_extractor_class(name)
    config = cls.Config.from_dict(options or {}, where=f"extraction.options.{name}")
    return cls(config=config, media=media, device=device)
