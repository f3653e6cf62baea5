"""Data side of cross-lingual training: few-shot rehearsal sampling and per-language evaluation."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from pipeline.config import ConfigBase, ConfigError
from pipeline.labels import LabelRow, LabelTable


@dataclass
class RehearsalConfig(ConfigBase):
    """Train on `source_language` and rehearse on `fraction` of `target_language`'s training rows."""

    source_language: str = "en"
    target_language: str = ""
    fraction: float = 0.0          # 0: zero-shot transfer; e.g. 0.05 for 5 % few-shot rehearsal
    seed: int = 0


def rehearsal_table(table: LabelTable, config: RehearsalConfig) -> LabelTable:
    """Training rows of the source language plus a seeded sample of the target language's training rows.

    Rows of other languages and the target's unsampled training rows leave the train split; valid/test rows
    of every language stay, so per-language evaluation sees them. Deterministic for a given seed.
    """
    if not 0.0 <= config.fraction <= 1.0:
        raise ConfigError(f"rehearsal fraction must lie in [0, 1], got {config.fraction}")
    languages = {r.language for r in table}
    if config.source_language not in languages:
        raise ConfigError(f"rehearsal source_language {config.source_language!r} has no rows; the label table "
                          f"has languages {', '.join(sorted(languages)) or '(none: add a language column)'}")
    if config.fraction > 0 and config.target_language not in languages:
        raise ConfigError(f"rehearsal target_language {config.target_language!r} has no rows; the label table "
                          f"has languages {', '.join(sorted(languages))}")
    target_train = sorted((r for r in table if r.mode == "train" and r.language == config.target_language),
                          key=lambda r: r.id)
    n_pick = round(config.fraction * len(target_train))
    if config.fraction > 0 and n_pick == 0 and target_train:
        n_pick = 1                                  # a positive fraction always rehearses at least one row
    picked = {r.id for r in random.Random(config.seed).sample(target_train, n_pick)}
    rows: list[LabelRow] = []
    for r in table:
        if r.mode != "train":
            rows.append(r)
        elif r.language == config.source_language or r.id in picked:
            rows.append(replace(r))
    return LabelTable(rows, table.source)


def per_language(metric_fn: Callable[[torch.Tensor, torch.Tensor], dict[str, float]],
                 predictions: torch.Tensor, labels: torch.Tensor,
                 languages: Sequence[str] | Sequence[int]) -> dict[str, dict[str, float]]:
    """Apply `metric_fn(predictions, labels)` to each language's rows separately (plus "all").

    `languages` holds a name or an index (the batch's "language" column) per row; results are keyed by str.
    """
    if not (len(predictions) == len(labels) == len(languages)):
        raise ValueError(f"per_language: {len(predictions)} predictions, {len(labels)} labels and "
                         f"{len(languages)} languages must match")
    out = {"all": metric_fn(predictions, labels)}
    for lang in sorted(set(languages)):
        idx = torch.tensor([i for i, l in enumerate(languages) if l == lang], dtype=torch.long)
        out[str(lang) if lang != "" else "(unset)"] = metric_fn(predictions[idx], labels[idx])
    return out
