"""Recurrent networks over padded batches: run only the valid steps (packed sequences)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.nn.masking import valid_counts


def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, object]:
    """Run a batch-first RNN over the valid steps only; outputs at padded steps are zeros.

    An empty row is run over its first step (packing needs a length of at least 1); `last_valid` and
    `masked_mean` of the outputs still give zeros for it.
    """
    lengths = valid_counts(mask).clamp(min=1).cpu()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, state
