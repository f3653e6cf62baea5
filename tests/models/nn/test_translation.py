"""The regressor of Seq2Seq2Sentiment's Eqs. 1-5: last valid state, or soft attention pooling A = H^K alpha."""

from __future__ import annotations

import pytest
import torch

from models.nn.rnn import run_rnn
from models.nn.translation import SentimentRNN

pytestmark = pytest.mark.usefixtures("one_thread")


def test_attention_pooling_is_eqs_3_to_5_by_hand():
    torch.manual_seed(0)
    head = SentimentRNN(5, 4, 1, dropout=0.0, n_layers=2, attention=True).eval()
    x = torch.randn(3, 6, 5)
    mask = torch.tensor([[1.0] * 6, [1.0] * 3 + [0.0] * 3, [1.0] * 2 + [0.0] * 4])
    prediction, summary, alpha = head(x, mask)
    hk, _ = run_rnn(head.rnn, x, mask)                                     # (B, T, 4): the last layer H^K
    for b in range(3):
        n = int(mask[b].sum())
        scores = hk[b, :n] @ head.attention.weight[0]                       # W_alpha shared over the T steps
        want_alpha = torch.softmax(scores, 0)
        assert torch.allclose(alpha[b, :n], want_alpha, atol=1e-6)
        assert torch.all(alpha[b, n:] == 0)                                 # padding gets no weight
        want_a = (want_alpha.unsqueeze(1) * hk[b, :n]).sum(0)              # Eq. 4
        assert torch.allclose(summary[b], want_a, atol=1e-6)
        want_y = head.head.weight @ want_a + head.head.bias                # Eq. 5
        assert torch.allclose(prediction[b], want_y, atol=1e-6)
    # one W_alpha (no bias) more than the last-state head of the same sizes
    plain = SentimentRNN(5, 4, 1, dropout=0.0, n_layers=2)
    assert sum(p.numel() for p in head.parameters()) - sum(p.numel() for p in plain.parameters()) == 4


def test_without_attention_the_head_reads_the_last_valid_state():
    torch.manual_seed(0)
    head = SentimentRNN(5, 4, 2, dropout=0.0).eval()
    x = torch.randn(2, 6, 5)
    mask = torch.tensor([[1.0] * 6, [1.0] * 3 + [0.0] * 3])
    prediction, summary, alpha = head(x, mask)
    out, _ = run_rnn(head.rnn, x, mask)
    assert alpha is None and prediction.shape == (2, 2)
    assert torch.allclose(summary, torch.stack([out[0, 5], out[1, 2]]))
    changed = x.clone()
    changed[1, 4] += 10.0                                                   # beyond row 1's last word
    assert torch.allclose(head(changed, mask)[0][1], prediction[1])
