"""Batched YIN fundamental-frequency estimation in torch (de Cheveigné & Kawahara, 2002)."""

from __future__ import annotations

import torch


def yin(frames: torch.Tensor, sample_rate: int, fmin: float, fmax: float,
        threshold: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """F0 in Hz and aperiodicity (the CMND minimum, 0 = perfectly periodic) for (N, W) frames."""
    n, w = frames.shape
    tau_min = max(1, int(sample_rate // fmax))
    tau_max = min(w // 2, int(sample_rate // fmin) + 1)
    win = w - tau_max
    x = frames.float()
    # r(tau) = sum_{j<win} x_j x_{j+tau} via FFT cross-correlation
    size = 1 << (w + win - 1).bit_length()
    fx = torch.fft.rfft(x, size)
    fw = torch.fft.rfft(x[:, :win], size)
    r = torch.fft.irfft(fx * fw.conj(), size)[:, : tau_max + 1]
    sq = torch.nn.functional.pad(torch.cumsum(x * x, dim=1), (1, 0))
    taus = torch.arange(tau_max + 1, device=x.device)
    energy_tau = sq[:, taus + win] - sq[:, taus]          # sum_{j<win} x_{j+tau}^2
    d = (energy_tau[:, :1] + energy_tau - 2.0 * r).clamp_min(0.0)
    cum = torch.cumsum(d[:, 1:], dim=1)
    cmnd = torch.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / cum.clamp_min(1e-12)
    search = cmnd[:, tau_min: tau_max]
    # first local minimum below threshold, else the global minimum (as in YIN step 4)
    is_min = torch.zeros_like(search, dtype=torch.bool)
    is_min[:, 1:-1] = (search[:, 1:-1] <= search[:, :-2]) & (search[:, 1:-1] <= search[:, 2:])
    below = is_min & (search < threshold)
    first = torch.where(below.any(1), below.float().argmax(1), search.argmin(1))
    tau = first + tau_min
    # parabolic interpolation around the chosen lag
    lo = (tau - 1).clamp(min=1)
    hi = (tau + 1).clamp(max=tau_max)
    rows = torch.arange(n, device=x.device)
    a, b, c = cmnd[rows, lo], cmnd[rows, tau], cmnd[rows, hi]
    denom = a - 2 * b + c
    shift = torch.where(denom.abs() > 1e-12, 0.5 * (a - c) / denom, torch.zeros_like(denom)).clamp(-1, 1)
    period = tau.float() + shift
    f0 = sample_rate / period
    return f0, cmnd[rows, tau].clamp(0.0, 1.0)
