"""RunningStandardizer: statistics of every valid training step, the same transform in evaluation, buffers."""

from __future__ import annotations

import torch

from models.nn.layers import RunningStandardizer


def test_statistics_are_those_of_every_valid_step_seen_while_training():
    g = torch.Generator().manual_seed(0)
    norm = RunningStandardizer(3)
    a, b = torch.randn(2, 4, 3, generator=g) * 50 + 7, torch.randn(3, 4, 3, generator=g) * 0.1
    ma = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])
    mb = torch.tensor([[1.0, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    norm.train()
    norm(a, ma)
    out = norm(b, mb)
    seen = torch.cat([a[ma > 0], b[mb > 0]]).double()              # 5 + 7 valid steps
    mean, std = seen.mean(0), seen.std(0, unbiased=False)
    assert int(norm.count) == 12
    assert torch.allclose(out[mb > 0].double(), (b[mb > 0].double() - mean) / std, atol=1e-5)
    assert torch.all(out[mb == 0] == 0)                              # padding stays zero
    norm.eval()
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    assert torch.allclose(norm(b, mb), out)                          # evaluation: the same transform, no update
    assert all(torch.equal(before[k], v) for k, v in norm.state_dict().items())
    assert set(norm.state_dict()) == {"count", "total", "total_sq"} and not list(norm.parameters())


def test_an_untrained_standardizer_is_the_identity_and_a_constant_feature_is_only_centred():
    x = torch.tensor([[[1.0, 5.0], [3.0, 5.0]]])
    mask = torch.ones(1, 2)
    norm = RunningStandardizer(2)
    assert torch.equal(norm.eval()(x, mask), x)
    norm.train()
    out = norm(x, mask)
    assert torch.allclose(out, torch.tensor([[[-1.0, 0.0], [1.0, 0.0]]]))
