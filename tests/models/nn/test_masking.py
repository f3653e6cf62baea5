"""One masking semantics for every model: valid steps where mask > 0; an empty row gives zeros, never NaN."""

from __future__ import annotations

import torch

from models.nn.masking import (
    key_padding_mask,
    last_valid,
    masked_max,
    masked_mean,
    masked_softmax,
    valid_counts,
    window_pool,
)
from models.nn.rnn import run_rnn

X = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)     # row 0: steps 0..3, row 1: steps 4..7
MASK = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])   # row 0: two valid steps, row 1: empty


def test_reductions_over_valid_steps_and_zeros_for_an_empty_row():
    assert valid_counts(MASK).tolist() == [2, 0]
    assert masked_mean(X, MASK).tolist() == [[1.5, 2.5, 3.5], [0.0, 0.0, 0.0]]
    assert masked_max(X, MASK).tolist() == [[3.0, 4.0, 5.0], [0.0, 0.0, 0.0]]
    assert last_valid(X, MASK).tolist() == [[3.0, 4.0, 5.0], [0.0, 0.0, 0.0]]


def test_without_a_mask_every_step_counts():
    assert torch.equal(masked_mean(X, None), X.mean(1))
    assert torch.equal(last_valid(X, None), X[:, -1])


def test_attention_helpers_stay_finite_on_an_empty_row():
    pad = key_padding_mask(MASK)
    assert pad.tolist() == [[False, False, True, True], [False, False, False, False]]   # empty row: every key
    attn = torch.nn.MultiheadAttention(3, 1, batch_first=True)
    out, _ = attn(X, X, X, key_padding_mask=pad)
    assert torch.isfinite(out).all()
    weights = masked_softmax(torch.zeros(2, 4), MASK)
    assert weights.tolist() == [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


def test_window_pool_has_no_window_for_an_empty_row():
    pooled, windows = window_pool(X, MASK, 2)
    assert windows.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert pooled[0].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert pooled[1].abs().sum() == 0


def test_rnn_outputs_are_zero_after_the_valid_steps_and_reductions_of_an_empty_row_are_zero():
    torch.manual_seed(0)
    rnn = torch.nn.GRU(3, 5, batch_first=True)
    out, _ = run_rnn(rnn, X, MASK)
    assert out.shape == (2, 4, 5)
    assert out[0, 2:].abs().sum() == 0
    assert last_valid(out, MASK)[1].abs().sum() == 0 and masked_mean(out, MASK)[1].abs().sum() == 0
    assert torch.equal(last_valid(out, MASK)[0], out[0, 1])
