"""The three modalities SentiFlow models, in the one order every tensor, table and code uses."""

from __future__ import annotations

from typing import Iterable

from pipeline.config import ConfigError

MODALITIES = ("text", "audio", "visual")   # also the column order of a batch's "present" tensor
MODALITY_CODES = {"text": "T", "audio": "A", "visual": "V"}   # the papers' table codes


def modality_code(modalities: Iterable[str]) -> str:
    """The papers' code of a modality set: T, A, V in that order (e.g. ["audio", "text"] -> "TA")."""
    mods = set(modalities)
    return "".join(MODALITY_CODES[m] for m in MODALITIES if m in mods)


def parse_modality_set(code: str) -> list[str]:
    """Modalities of a code such as 'TA' or a comma list such as 'text,audio'; error on anything else."""
    code = code.strip()
    names = {v: k for k, v in MODALITY_CODES.items()}
    if "," in code or code.lower() in MODALITIES:
        mods = [m.strip().lower() for m in code.split(",") if m.strip()]
        bad = [m for m in mods if m not in MODALITIES]
    else:
        bad = [c for c in code.upper() if c not in names]
        mods = [names[c] for c in code.upper() if c in names]
    if bad or not mods:
        raise ConfigError(f"modality set {code!r}: use letters T, A, V (e.g. TA) or names text,audio,visual")
    return [m for m in MODALITIES if m in mods]
