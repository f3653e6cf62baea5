"""Per-clip modality attention and modality-selection policy values that models expose, as histograms.

A model that weighs or selects its modalities puts per-row values into `ModelOutput.extras` under one of
the keys of `INSIGHTS`, each a dict {part name: (B,) tensor in [0, 1]}:
  "modality_attention": the share of attention/fusion weight each part gets (FDMER's fusion weights over its
                        common/private tokens, VAE-AMDT's triple-attention mass per modality);
  "modality_selection": the share of a clip's windows in which a policy used each modality (AdaMML);
  "modality_shift":     the share of the text representation's gated shift each auxiliary modality contributes
                        (hybrid-modal attention's Multimodal Shifting Gate; norm ratio averaged over tokens).
Values that cost extra work (VAE-AMDT's attention probabilities, the MSG shares) are computed only while the
model's `collect_insights` attribute is true, which `collect_insights` below sets for one prediction pass.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from models.data import PackedSplit
from models.run_dir import INSIGHTS_FILE
from models.trainer import predict_split

# extras key -> (plot title, x-axis label)
INSIGHTS: dict[str, tuple[str, str]] = {
    "modality_attention": ("modality attention: share of the fusion/attention weight per clip", "weight share"),
    "modality_selection": ("policy: share of each clip's windows that use the modality", "share of windows"),
    "modality_shift": ("shifting gate: share of the text representation's shift from each modality", "share of shift"),
}
SHARES = ("modality_attention", "modality_shift")   # parts sum to 1 per clip: one part alone says nothing


@contextmanager
def insight_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Let the model compute its optional insight values (attribute `collect_insights`) inside the block."""
    before = getattr(model, "collect_insights", False)
    model.collect_insights = True
    try:
        yield model
    finally:
        model.collect_insights = before


def collect_insights(model: torch.nn.Module, split: PackedSplit, device: torch.device,
                     batch_size: int = 256) -> dict[str, dict[str, np.ndarray]]:
    """{insight key: {part: per-row values}} for every row of a split; empty when the model exposes none.

    Shares over a single part (a text-only model's attention: always 1) are left out.
    """
    with insight_mode(model):
        out = predict_split(model, split, device, batch_size, extras=tuple(INSIGHTS))
    found: dict[str, dict[str, np.ndarray]] = {}
    for name, values in out.items():
        key, _, part = name.partition("/")
        if key in INSIGHTS and part:
            found.setdefault(key, {})[part] = values.reshape(len(values), -1)[:, 0].numpy()
    return {key: parts for key, parts in found.items() if key not in SHARES or len(parts) > 1}


def summarize_insights(found: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Mean, std, median and count of each part's values, with the insight's title."""
    return {key: {"title": INSIGHTS[key][0],
                  "parts": {part: {"mean": float(np.mean(v)), "std": float(np.std(v)),
                                   "median": float(np.median(v)), "n": int(len(v))} for part, v in parts.items()}}
            for key, parts in found.items()}


def write_insight_plots(model: torch.nn.Module, split: PackedSplit, device: torch.device, target: Path,
                        batch_size: int = 256) -> dict[str, str]:
    """Histogram PNGs (`<key>.png`) and insights.json of the model's attention/policy values into `target`."""
    from models.plots import plot_share_histograms

    found = collect_insights(model, split, device, batch_size)
    if not found:
        return {}
    target.mkdir(parents=True, exist_ok=True)
    plots = {key: str(plot_share_histograms(parts, target / f"{key}.png", INSIGHTS[key][0], INSIGHTS[key][1]))
             for key, parts in found.items()}
    (target / INSIGHTS_FILE).write_text(json.dumps(summarize_insights(found), indent=1), encoding="utf-8")
    return plots
