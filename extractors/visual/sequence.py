"""Fixed-length views of per-frame visual features where some frames have no face (masked, not averaged in)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from extractors.base import sequence_features
from pipeline.config import ConfigError


def masked_sequence_features(x: torch.Tensor, times: torch.Tensor, present: torch.Tensor, length: int,
                             mode: str) -> dict[str, torch.Tensor]:
    """The standard sequence tensor set, with `mask` 0 at steps without a face and faceless frames left out of pools.

    x (T, D) has zero rows where present (T,) is 0. Adds `face_present` (T,) at the full rate.
    """
    out = sequence_features(x, times, length, mode)
    present = present.to(torch.float32)
    t = x.shape[0]
    if t > length and mode == "pool":
        num = F.adaptive_avg_pool1d((x.float() * present[:, None]).T.unsqueeze(0), length)[0].T
        den = F.adaptive_avg_pool1d(present.view(1, 1, -1), length)[0, 0]
        out["fixed"] = torch.where(den[:, None] > 0, num / den.clamp_min(1e-9)[:, None], 0.0).to(x.dtype)
        out["mask"] = (den > 0).to(torch.float32)
    elif t > length and mode == "truncate":
        out["mask"] = present[:length].clone()
    elif t > length:
        raise ConfigError(f"sequence fit mode must be 'truncate' or 'pool', got {mode!r}")
    else:
        out["mask"][:t] = present
    out["face_present"] = present.contiguous()
    return out
