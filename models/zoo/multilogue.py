"""Multilogue-Net (Shenoy & Sardana, 2020) adapted to monologues.

Multilogue-Net runs, per modality m, the DialogueRNN recurrences over a conversation's utterances u_t:
    g_t = GRU_G(g_{t-1}, u_t (+) q_{t-1})                       global context state
    c_t = sum_{i<t} alpha_i g_i,  alpha = softmax(u_t^T W_alpha [g_1 .. g_{t-1}])   context attention
    q_t = GRU_P(q_{t-1}, u_t (+) c_t)                           party (speaker) state
    e_t = GRU_E(e_{t-1}, q_t)                                   emotion state
and fuses the three modalities' emotion states with pairwise attention (MMMU-BA, Ghosal et al. 2018):
for a pair (X, Y) of (W, d) sequences, N_1 = softmax(X Y^T), N_2 = softmax(Y X^T), A_1 = (N_1 Y) * X,
A_2 = (N_2 X) * Y; the fused sequence is [A's of the three pairs; E_t; E_a; E_v] through a dense layer.

Monologue adaptation (our choice, the paper is about dialogues): a segment has a single speaker, so there is
one party state and no listener update; the "utterances" are W equal consecutive windows of the segment
(each modality's window mean, as its unaligned sequences have different rates); the segment's sentiment is
read from the fused vector at the last non-empty window (it has seen the whole segment through the
recurrences). Sizes (chosen; the released code's are tuned per dataset): D_g = D_p = 150, D_e = D_h = 100,
8 windows, dropout 0.25.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.masking import last_valid, window_pool
from models.nn.modalities import available_modalities, check_modalities, modality_dim, require_keys
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES


class MonologueRNN(nn.Module):
    """DialogueRNN recurrences for a single party over a window sequence: emotion states (B, W, D_e)."""

    def __init__(self, d_in: int, d_g: int, d_p: int, d_e: int, dropout: float) -> None:
        super().__init__()
        self.global_cell = nn.GRUCell(d_in + d_p, d_g)
        self.party_cell = nn.GRUCell(d_in + d_g, d_p)
        self.emotion_cell = nn.GRUCell(d_p, d_e)
        self.attention = nn.Linear(d_in, d_g, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.sizes = (d_g, d_p, d_e)

    def forward(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run over W windows; an empty window leaves every state unchanged."""
        b, w, _ = u.shape
        d_g, d_p, d_e = self.sizes
        g = u.new_zeros(b, d_g)
        q = u.new_zeros(b, d_p)
        e = u.new_zeros(b, d_e)
        history: list[torch.Tensor] = []
        emotions = []
        for t in range(w):
            u_t = u[:, t]
            m = mask[:, t].unsqueeze(-1)
            if history:
                hist = torch.stack(history, 1)                                   # (B, t, D_g)
                scores = (self.attention(u_t).unsqueeze(1) * hist).sum(-1)       # (B, t)
                scores = scores.masked_fill(mask[:, :t] <= 0, torch.finfo(scores.dtype).min)
                context = (torch.softmax(scores, -1).unsqueeze(-1) * hist).sum(1)
            else:
                context = u.new_zeros(b, d_g)
            g = m * self.global_cell(torch.cat([u_t, q], -1), g) + (1 - m) * g
            q = m * self.party_cell(torch.cat([u_t, context], -1), q) + (1 - m) * q
            e = m * self.emotion_cell(self.dropout(q), e) + (1 - m) * e
            history.append(g)
            emotions.append(e)
        return torch.stack(emotions, 1)


def pairwise_attention(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MMMU-BA bimodal attention between two (B, W, d) sequences; masked windows get no weight."""
    invalid = (mask <= 0).unsqueeze(1)                                          # (B, 1, W) over keys
    m1 = torch.bmm(x, y.transpose(1, 2)).masked_fill(invalid, torch.finfo(x.dtype).min)
    m2 = torch.bmm(y, x.transpose(1, 2)).masked_fill(invalid, torch.finfo(x.dtype).min)
    a1 = torch.bmm(torch.softmax(m1, -1), y) * x
    a2 = torch.bmm(torch.softmax(m2, -1), x) * y
    return a1, a2


@dataclass
class MultilogueConfig(ConfigBase):
    """Multilogue-Net (monologue) hyperparameters."""

    modalities_used: list[str] = field(default_factory=lambda: ["text", "audio", "visual"])  # those present
    n_windows: int = 8
    global_size: int = 150
    party_size: int = 150
    emotion_size: int = 100
    hidden_size: int = 100
    dropout: float = 0.25
    use_pairwise_attention: bool = True


class MultilogueNet(SentimentModel):
    """Per-modality single-party DialogueRNN over windows, pairwise attention fusion, regressor."""

    name = "multilogue"
    Config = MultilogueConfig
    aligned = False
    ablatable = ("use_pairwise_attention",)

    def __init__(self, config: MultilogueConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.modalities_used, "modalities_used", self.name)
        if cfg.n_windows < 1:
            raise ConfigError(f"model.{self.name}.n_windows must be >= 1, got {cfg.n_windows}")
        self.used = available_modalities(spec, cfg.modalities_used, self.name)
        self.rnns = nn.ModuleDict({
            m: MonologueRNN(modality_dim(spec, [m], self.name), cfg.global_size, cfg.party_size,
                            cfg.emotion_size, cfg.dropout) for m in self.used})
        self.pairs = list(combinations(range(len(self.used)), 2)) if cfg.use_pairwise_attention else []
        width = cfg.emotion_size * (len(self.used) + 2 * len(self.pairs))
        self.fuse = nn.Sequential(nn.Linear(width, cfg.hidden_size), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.head = nn.Linear(cfg.hidden_size, spec.n_outputs)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Window each modality, run the recurrences, fuse pairwise, predict from the last window."""
        cfg = self.config
        require_keys(batch, [k for m in self.used for k in (m, f"{m}_mask")], self.name)
        emotions, masks = [], []
        present = batch.get("present")
        for m in self.used:
            u, wm = window_pool(batch[m].float(), batch[f"{m}_mask"].float(), cfg.n_windows)
            if present is not None:
                wm = wm * present[:, MODALITIES.index(m)].float().unsqueeze(-1)
            emotions.append(self.rnns[m](u, wm))
            masks.append(wm)
        window_mask = (torch.stack(masks, -1).sum(-1) > 0).float()
        parts = list(emotions)
        for i, j in self.pairs:
            parts.extend(pairwise_attention(emotions[i], emotions[j], window_mask))
        fused_seq = self.fuse(torch.cat(parts, -1))
        span = self._span(window_mask)
        fused = last_valid(fused_seq, span)
        return ModelOutput(self.head(fused), {"fused": fused, **{m: last_valid(e, span) for m, e in
                                                                 zip(self.used, emotions)}})

    @staticmethod
    def _span(window_mask: torch.Tensor) -> torch.Tensor:
        """1 up to each row's last non-empty window (states carry over empty windows)."""
        pos = torch.arange(1, window_mask.shape[1] + 1, device=window_mask.device, dtype=window_mask.dtype)
        last = (window_mask * pos).amax(-1, keepdim=True).clamp(min=1.0)
        return (pos.unsqueeze(0) <= last).to(window_mask.dtype)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """The task loss only (the paper trains with the task loss and L2 regularisation = weight decay)."""
        return {"task": self.task_loss(output.prediction, batch["label"])}
