"""Baselines: the early-fusion LSTM of the Seq2Seq (MCTN) paper and a unimodal head, plus shared layers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel, register_model
from pipeline.config import ConfigBase, ConfigError

MODALITY_ORDER = ("text", "audio", "visual")   # column order of batch["present"]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, D) where mask (B, T) is 1; zeros for an all-masked row."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of (B, T, D) where mask is 1; zeros for an all-masked row."""
    neg = torch.finfo(x.dtype).min
    out = x.masked_fill(mask.unsqueeze(-1) <= 0, neg).amax(1)
    return torch.where(mask.sum(1, keepdim=True) > 0, out, torch.zeros_like(out))


def key_padding(mask: torch.Tensor) -> torch.Tensor:
    """nn.MultiheadAttention key_padding_mask (True = ignore) that never masks a whole row (avoids NaN)."""
    pad = mask <= 0
    first = torch.zeros_like(pad)
    first[:, 0] = True
    return pad & ~(first & pad.all(1, keepdim=True))   # no `if empty.any()`: that would sync with the GPU


def modality_inputs(batch: dict[str, torch.Tensor], modality: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, mask) of one modality, the mask zeroed where the modality is absent for a sample."""
    x = batch[modality]
    mask = batch.get(f"{modality}_mask")
    if mask is None:
        mask = torch.ones(x.shape[:2], device=x.device, dtype=x.dtype)
    if "present" in batch:
        mask = mask * batch["present"][:, MODALITY_ORDER.index(modality)].unsqueeze(1).to(mask.dtype)
    return x, mask


def spec_modalities(spec: ModelSpec, wanted: tuple[str, ...]) -> list[str]:
    """The wanted modalities that the data provides (in canonical order)."""
    return [m for m in MODALITY_ORDER if m in wanted and m in spec.dims]


@dataclass
class UnimodalHeadConfig(ConfigBase):
    """One modality's sequence -> encoder -> MLP; 'pool' = masked mean+max, 'lstm' = BiLSTM then pooling."""

    modality: str = "text"
    encoder: str = "pool"          # "pool" | "lstm"
    hidden: int = 128
    dropout: float = 0.2


@register_model
class UnimodalHead(SentimentModel):
    """A head on one modality's features (the unimodal rows of the papers' ablation tables)."""

    name = "unimodal"
    Config = UnimodalHeadConfig

    def __init__(self, config: UnimodalHeadConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        if config.modality not in MODALITY_ORDER:
            raise ConfigError(f"model.unimodal.modality must be one of {', '.join(MODALITY_ORDER)}")
        if config.modality not in spec.dims:
            raise ConfigError(f"model.unimodal.modality={config.modality!r} but the data has only "
                              f"{', '.join(spec.dims) or 'no modalities'}")
        if config.encoder not in ("pool", "lstm"):
            raise ConfigError(f"model.unimodal.encoder must be 'pool' or 'lstm', got {config.encoder!r}")
        d = spec.dims[config.modality]
        self.norm = nn.LayerNorm(d)
        if config.encoder == "lstm":
            self.rnn = nn.LSTM(d, config.hidden, batch_first=True, bidirectional=True)
            feat = 4 * config.hidden
        else:
            self.rnn = None
            feat = 2 * d
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(feat, config.hidden), nn.GELU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden, spec.n_outputs))

    @property
    def required_modalities(self) -> tuple[str, ...]:
        """The modality it cannot score without."""
        return (self.config.modality,)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        x, mask = modality_inputs(batch, self.config.modality)
        h = self.norm(x)
        if self.rnn is not None:
            h, _ = self.rnn(h)
        pooled = torch.cat([masked_mean(h, mask), masked_max(h, mask)], -1)
        return ModelOutput(self.head(pooled), {"fused": pooled, self.config.modality: pooled})

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        return {"task": self.task_loss(output.prediction, batch["label"])}


@dataclass
class EarlyFusionLSTMConfig(ConfigBase):
    """EF-LSTM: modalities resampled to a common length, concatenated per step, one LSTM (MCTN baseline)."""

    steps: int = 50          # common sequence length after resampling each modality
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.2
    modalities: list[str] = field(default_factory=lambda: list(MODALITY_ORDER))   # those the data has are used


@register_model
class EarlyFusionLSTM(SentimentModel):
    """Early fusion: per-step concatenation of time-resampled modalities into a single LSTM."""

    name = "ef_lstm"
    Config = EarlyFusionLSTMConfig

    def __init__(self, config: EarlyFusionLSTMConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        self.used = spec_modalities(spec, tuple(config.modalities))
        if not self.used:
            raise ConfigError(f"ef_lstm: none of model.ef_lstm.modalities {config.modalities} is in the data "
                              f"({', '.join(spec.dims)})")
        self.norms = nn.ModuleDict({m: nn.LayerNorm(spec.dims[m]) for m in self.used})
        width = sum(spec.dims[m] for m in self.used) + len(self.used)   # + one presence channel per modality
        self.rnn = nn.LSTM(width, config.hidden, num_layers=config.layers, batch_first=True,
                           dropout=config.dropout if config.layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.hidden, config.hidden), nn.ReLU(),
                                  nn.Linear(config.hidden, spec.n_outputs))

    def _resample(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) -> (B, steps, D) by averaging the valid steps falling in each output bin."""
        steps = self.config.steps
        m = mask.to(x.dtype).unsqueeze(-1)
        num = nn.functional.adaptive_avg_pool1d((x * m).transpose(1, 2), steps).transpose(1, 2)
        den = nn.functional.adaptive_avg_pool1d(m.transpose(1, 2), steps).transpose(1, 2)
        return num / den.clamp_min(1e-6), (den.squeeze(-1) > 0).to(x.dtype)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        parts, masks = [], []
        for m in self.used:
            x, mask = modality_inputs(batch, m)
            xs, ms = self._resample(self.norms[m](x), mask)
            parts.append(xs * ms.unsqueeze(-1))
            parts.append(ms.unsqueeze(-1))
            masks.append(ms)
        seq = torch.cat(parts, -1)
        step_mask = torch.stack(masks, 0).amax(0)
        out, _ = self.rnn(seq)
        # the state at the last step that any modality covers
        last = (step_mask * torch.arange(1, step_mask.shape[1] + 1, device=seq.device)).argmax(1)
        h = out[torch.arange(out.shape[0], device=seq.device), last]
        return ModelOutput(self.head(h), {"fused": h})

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        return {"task": self.task_loss(output.prediction, batch["label"])}
