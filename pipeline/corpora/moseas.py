"""CMU-MOSEAS, one language per folder: <root>/<lang>/label.csv + <root>/<lang>[/Raw]/<vid>/<clip>.mp4."""

from __future__ import annotations

import os

from pipeline.corpora.base import Dataset, DatasetError, require_dir
from pipeline.corpora.mmsa import load_mmsa

MOSEAS_LANGUAGES = ("es", "fr", "pt", "de")


def load_moseas(root: str | os.PathLike, language: str = "es") -> Dataset:
    """CMU-MOSEAS, one language (es, fr, pt, de): <root>/<lang>/label.csv + <root>/<lang>[/Raw]/<vid>/<clip>.mp4."""
    if language not in MOSEAS_LANGUAGES:
        raise DatasetError(f"CMU-MOSEAS language must be one of {', '.join(MOSEAS_LANGUAGES)}, got {language!r}")
    root = require_dir(root, "CMU-MOSEAS")
    lang_root = root / language
    if not lang_root.is_dir():
        present = [lang for lang in MOSEAS_LANGUAGES if (root / lang).is_dir()]
        raise DatasetError(f"CMU-MOSEAS: no folder for language {language!r}: expected {lang_root} "
                           f"(present: {', '.join(present) or 'none'})")
    ds = load_mmsa(lang_root, f"moseas-{language}", language=language)
    ds.root = root
    return ds
