"""CMU-MOSEAS, one language per folder: <root>/<lang>/label.csv + <root>/<lang>[/Raw]/<vid>/<clip>.mp4.

As the multilingual paper uses it (Section 3): `split="paper"` takes 80 % of each language's segments for training,
10 % for validation and 10 % for testing (whole videos, seeded, so no speaker's video is in two splits; the paper
does not say how it split), and `drop_neutral=True` removes the segments labelled in [-0.5, 0.5] - after
splitting, so the splits stay the same with or without the filter (its Table 1 trains Multilogue-Net and NCE
without the removal, AdaMML with it). The default keeps the label file's own `mode` column and every row.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.corpora.base import Dataset, DatasetError, require_dir
from pipeline.corpora.folds import assign_folds, video_folds
from pipeline.corpora.mmsa import load_mmsa
from pipeline.labels import LabelTable

MOSEAS_LANGUAGES = ("es", "fr", "pt", "de")
SPLITS = ("file", "paper")
PAPER_SHARES = (0.8, 0.1, 0.1)      # train / valid / test (Section 3)
NEUTRAL_BAND = 0.5                  # |label| <= 0.5 is neutral (Section 3)


def load_moseas(root: str | os.PathLike, language: str = "es", split: str = "file", drop_neutral: bool = False,
                split_seed: int = 0) -> Dataset:
    """CMU-MOSEAS, one language (es, fr, pt, de): <root>/<lang>/label.csv + <root>/<lang>[/Raw]/<vid>/<clip>.mp4;
    `split="paper"` for the multilingual paper's 80/10/10 video split, `drop_neutral` to remove labels in
    [-0.5, 0.5]."""
    if language not in MOSEAS_LANGUAGES:
        raise DatasetError(f"CMU-MOSEAS language must be one of {', '.join(MOSEAS_LANGUAGES)}, got {language!r}")
    if split not in SPLITS:
        raise DatasetError(f"CMU-MOSEAS split must be 'file' (the label file's mode column) or 'paper' (80/10/10 by "
                           f"video), got {split!r}")
    root = require_dir(root, "CMU-MOSEAS")
    lang_root = root / language
    if not lang_root.is_dir():
        present = [lang for lang in MOSEAS_LANGUAGES if (root / lang).is_dir()]
        raise DatasetError(f"CMU-MOSEAS: no folder for language {language!r}: expected {lang_root} "
                           f"(present: {', '.join(present) or 'none'})")
    ds = load_mmsa(lang_root, f"moseas-{language}", language=language)
    ds.root = root
    rows = list(ds.table or [])
    if split == "paper":
        assign_folds(rows, video_folds(rows, PAPER_SHARES, split_seed), "the paper's 80/10/10 video split")
    if drop_neutral:
        rows = [r for r in rows if abs(r.label) > NEUTRAL_BAND]
        if not rows:
            raise DatasetError(f"CMU-MOSEAS {language}: every segment is neutral (|label| <= {NEUTRAL_BAND})")
        kept = {r.id for r in rows}
        ds.problems = [p for p in ds.problems if p.split(":", 1)[0] in kept]
        ds.media = [Path(r.path) for r in rows if r.path]
    ds.table = LabelTable(rows, ds.table.source if ds.table else "", list(ds.table.columns) if ds.table else [])
    return ds
