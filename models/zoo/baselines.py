"""Baselines: Seq2Seq2Sentiment's word-level LSTM on [w; a; v], an unaligned early-fusion LSTM and a unimodal head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.layers import RunningStandardizer
from models.nn.masking import masked_max, masked_mean
from models.nn.modalities import aligned_input, available_modalities, modality_inputs
from models.nn.translation import SentimentRNN
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES


@dataclass
class UnimodalHeadConfig(ConfigBase):
    """One modality's sequence -> encoder -> MLP; 'pool' = masked mean+max, 'lstm' = BiLSTM then pooling."""

    modality: str = "text"
    encoder: str = "pool"          # "pool" | "lstm"
    hidden: int = 128
    dropout: float = 0.2


class UnimodalHead(SentimentModel):
    """A head on one modality's features (the unimodal rows of the papers' ablation tables)."""

    name = "unimodal"
    Config = UnimodalHeadConfig

    def __init__(self, config: UnimodalHeadConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        if config.modality not in MODALITIES:
            raise ConfigError(f"model.unimodal.modality must be one of {', '.join(MODALITIES)}")
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
    """EF-LSTM: modalities resampled to a common length, concatenated per step, one LSTM (SentiFlow's unaligned
    early fusion; the Seq2Seq paper's own baseline reads word-aligned features: `word_lstm`)."""

    steps: int = 50          # common sequence length after resampling each modality
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.2
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))   # those the data has are used


class EarlyFusionLSTM(SentimentModel):
    """Early fusion: per-step concatenation of time-resampled modalities into a single LSTM (unaligned input)."""

    name = "ef_lstm"
    Config = EarlyFusionLSTMConfig

    def __init__(self, config: EarlyFusionLSTMConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        self.used = available_modalities(spec, config.modalities, self.name, require=False)
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


@dataclass
class WordLSTMConfig(ConfigBase):
    """Seq2Seq2Sentiment's baseline: the word-aligned modalities concatenated per word, x_t = [w_t; a_t; v_t]
    (Sec. 3), into the K-layer LSTM regressor of Eqs. 1-5. The sizes are Seq2Seq2Sentiment's regressor's
    (`regressor_hidden`, `regressor_layers`, `dropout`, `attention_pooling`, and its `standardize` input
    adapter), since Sec. 5.2 keeps the model the same so that only the learned representation differs; the paper
    states none of them."""

    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))   # those the data has are used
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.2
    attention_pooling: bool = False
    standardize: bool = True        # adapter, as Seq2Seq2Sentiment's: the features standardised per feature


class WordLSTM(SentimentModel):
    """LSTM on the word-level concatenation [w; a; v] (Seq2Seq2Sentiment Sec. 5.2, after Chen et al. 2017): the
    unimodal, bimodal and trimodal baseline rows of Tables 1-3 are its modality subsets (`sentiflow ablate`)."""

    name = "word_lstm"
    Config = WordLSTMConfig
    aligned = True
    ablations = {"attention pooling": {"attention_pooling": True}}

    def __init__(self, config: WordLSTMConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        self.used = available_modalities(spec, config.modalities, self.name)
        width = sum(spec.dims[m] for m in self.used)
        self.input_norm = RunningStandardizer(width) if config.standardize else None
        self.regressor = SentimentRNN(width, config.hidden, spec.n_outputs, config.dropout, config.layers,
                                      config.attention_pooling)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Regress from the concatenated word-level features."""
        x = aligned_input(batch, self.used, self.name)
        mask = batch["aligned_mask"].float()
        if self.input_norm is not None:
            x = self.input_norm(x, mask)
        prediction, summary, alpha = self.regressor(x, mask)
        return ModelOutput(prediction, {"fused": summary}, {} if alpha is None else {"attention": alpha})

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """The task loss (MAE, Eq. 6, with the paper's recipe)."""
        return {"task": self.task_loss(output.prediction, batch["label"])}
