"""Feature extractors, one module per extractor, all behind `extractors.base.Extractor`.

Adding an extractor: write one module with a class decorated by `@register_extractor`, and import it here.
"""

from extractors import acoustic, logmel, tonal  # noqa: F401  (registration side effects)
from extractors import face, fer  # noqa: F401  (visual path: registration side effects)
from extractors import text_encoder, transcript, word_aligned  # noqa: F401  (text path: "text", "transcript", "aligned")
from extractors.base import Extractor, Features, FeatureUnavailable, MediaItem, register_extractor, registry

__all__ = ["Extractor", "Features", "FeatureUnavailable", "MediaItem", "register_extractor", "registry"]
