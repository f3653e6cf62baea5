"""Generic building blocks shared by zoo models: gradient reversal, positional encoding, attention blocks, MLPs."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.nn.masking import future_mask, key_padding_mask


class _ReverseGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by -lambda backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.lambd * grad, None


def reverse_gradient(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """Gradient reversal (Ganin & Lempitsky 2015): identity forward, gradient times -lambd backward."""
    return _ReverseGrad.apply(x, lambd)


class GradientReversal(nn.Module):
    """Module form of `reverse_gradient`, so an adversary trains with the same optimiser as everything else."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity with reversed gradient."""
        return reverse_gradient(x, self.lambd)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal positional encoding (Vaswani et al. 2017) of shape (length, dim); odd dims are handled."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    half = (dim + 1) // 2
    freq = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) / max(half, 1)))
    angles = pos * freq.unsqueeze(0)
    pe = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[:, :dim]
    return pe.to(dtype)


class CrossAttentionLayer(nn.Module):
    """Pre-LayerNorm transformer layer whose queries come from one sequence and keys/values from another.

    With `x_kv is None` it is an ordinary self-attention layer (build it with cross=False so it has no unused
    source LayerNorm). Residual + ReLU feed-forward (4x) as in MulT.
    """

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0, ffn_mult: int = 4, cross: bool = True) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross else None   # only a crossmodal layer normalises its source
        self.norm_ffn = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_mult * dim)
        self.fc2 = nn.Linear(ffn_mult * dim, dim)
        self.relu_dropout = relu_dropout
        self.res_dropout = res_dropout

    def forward(self, x: torch.Tensor, x_kv: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, Tq, D), x_kv (B, Tk, D); key_padding_mask (B, Tk) True = ignore; attn_mask (Tq, Tk) True = blocked."""
        q = self.norm_q(x)
        if x_kv is not None and self.norm_kv is None:
            raise ValueError("this CrossAttentionLayer was built for self-attention (cross=False)")
        kv = q if x_kv is None else self.norm_kv(x_kv)
        h, _ = self.attn(q, kv, kv, key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=False)
        x = x + F.dropout(h, self.res_dropout, self.training)
        h = F.relu(self.fc1(self.norm_ffn(x)))
        h = F.dropout(h, self.relu_dropout, self.training)
        h = self.fc2(h)
        return x + F.dropout(h, self.res_dropout, self.training)


class CrossmodalTransformer(nn.Module):
    """A stack of `CrossAttentionLayer`s with scaled input + sinusoidal positions and a final LayerNorm (MulT).

    Keys/values (if given) get the same scaling and positions; every layer attends to the same source sequence.
    """

    def __init__(self, dim: int, heads: int, layers: int, attn_dropout: float = 0.0, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0, embed_dropout: float = 0.0, causal: bool = False,
                 cross: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.embed_scale = math.sqrt(dim)
        self.embed_dropout = embed_dropout
        self.causal = causal
        self.layers = nn.ModuleList(
            [CrossAttentionLayer(dim, heads, attn_dropout, relu_dropout, res_dropout, cross=cross)
             for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(dim)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_scale * x + sinusoidal_positions(x.shape[1], self.dim, x.device, x.dtype).unsqueeze(0)
        return F.dropout(x, self.embed_dropout, self.training)

    def forward(self, x: torch.Tensor, x_kv: torch.Tensor | None = None,
                kv_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, Tq, D) queries; x_kv (B, Tk, D) source (None = self-attention); kv_mask (B, Tk) 1 = valid."""
        x = self._embed(x)
        kv = None if x_kv is None else self._embed(x_kv)
        k_len = x.shape[1] if kv is None else kv.shape[1]
        attn_mask = future_mask(x.shape[1], k_len, x.device) if self.causal else None
        pad = key_padding_mask(kv_mask)
        if attn_mask is not None and pad is not None:
            # a query row whose visible keys are all padding would be NaN: let such rows see every key
            blocked = attn_mask.unsqueeze(0) | pad.unsqueeze(1)               # (B, Tq, Tk)
            dead = blocked.all(dim=-1, keepdim=True)
            attn_mask = (blocked & ~dead).repeat_interleave(self.layers[0].attn.num_heads, dim=0) \
                if len(self.layers) else None
            pad = None
        for layer in self.layers:
            x = layer(x, kv, key_padding_mask=pad, attn_mask=attn_mask)
        return self.norm(x)


class GeluMLP(nn.Module):
    """Two-layer perceptron with GELU: Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to the last dimension."""
        return self.net(x)


class RunningStandardizer(nn.Module):
    """Per-feature standardisation (x - mean) / std of a (B, T, D) sequence with the mean and std of every valid
    step seen while training: cumulative over the training data (exact after one epoch), not per batch, so
    training and evaluation apply the same transform. The statistics are buffers (saved with the weights); they
    stop changing in eval mode, so a frozen part (eval mode) keeps its transform. Padded steps stay zero.

    An input adapter for raw features whose scales differ by orders of magnitude (e.g. f0 in Hz beside MFCC
    deltas); a feature that has not varied passes through centred but unscaled.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("total", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("total_sq", torch.zeros(dim, dtype=torch.float64))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x standardised with the statistics so far (after adding this batch's valid steps while training)."""
        valid = mask > 0
        if self.training:
            with torch.no_grad():
                steps = x[valid].double()
                self.count += steps.shape[0]
                self.total += steps.sum(0)
                self.total_sq += (steps * steps).sum(0)
        n = self.count.clamp(min=1.0)
        mean = self.total / n
        std = (self.total_sq / n - mean * mean).clamp(min=0.0).sqrt()
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        out = (x.float() - mean.float()) / std.float()
        return out * valid.unsqueeze(-1).to(out.dtype)
