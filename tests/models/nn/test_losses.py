"""The multilingual paper's NCE (Section 5.1) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from models.nn.losses import nce_loss

E = math.e


def test_two_pairs_match_the_formula():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    # scores x_i . y_j = [[2, 0], [0, 1]]; each positive's negatives are the two unmatched pairs sharing a member
    expected = (math.log(E ** 2 + 2) - 2) + (math.log(E + 2) - 1)
    assert nce_loss(x, y).item() == pytest.approx(expected, rel=1e-6)
    assert nce_loss(x, y, reduction="mean").item() == pytest.approx(expected / 2, rel=1e-6)


def test_negatives_are_the_unmatched_pairs_in_both_directions():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    # scores [[1, 1, 0], [0, 1, 2], [1, 2, 2]]: row i's negatives are s_ij and s_ji, j != i
    expected = ((math.log(3 * E + 2) - 1) + (math.log(2 * E ** 2 + 2 * E + 1) - 1)
                + (math.log(3 * E ** 2 + E + 1) - 2))
    assert nce_loss(x, y).item() == pytest.approx(expected, rel=1e-6)
    # raw dot products, no normalisation: scaling the inputs changes the loss
    assert nce_loss(2 * x, y).item() != pytest.approx(expected, rel=1e-3)


def test_rows_without_a_pair_are_left_out_and_one_pair_gives_zero():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], requires_grad=True)
    y = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-5.0, 5.0]])
    valid = torch.tensor([True, True, False])
    expected = (math.log(E ** 2 + 2) - 2) + (math.log(E + 2) - 1)
    assert nce_loss(x, y, valid).item() == pytest.approx(expected, rel=1e-6)
    one = nce_loss(x, y, torch.tensor([True, False, False]))
    assert one.item() == 0.0
    one.backward()                                  # still part of the graph, with a zero gradient
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_gradient_pulls_the_positive_pair_together():
    torch.manual_seed(0)
    x = torch.randn(6, 4, requires_grad=True)
    y = torch.randn(6, 4)
    before = nce_loss(x, y)
    before.backward()
    with torch.no_grad():
        stepped = x - 0.05 * x.grad
    assert nce_loss(stepped, y).item() < before.item()
    with pytest.raises(ValueError, match="one shape"):
        nce_loss(x, y[:, :3])
    with pytest.raises(ValueError, match="reduction"):
        nce_loss(x, y, reduction="max")
