"""AdaMML (Panda, Chen, Fan, et al.; ICCV 2021) as adapted for sentiment in the multilingual paper.

Each segment is split into W equal windows. Per window, a light policy network (a linear embedding of each
modality's window mean, an LSTM over the windows) emits for every modality k two logits, and a
Gumbel-softmax sample (straight-through, hard one-hot, temperature tau) decides u_{w,k} in {0, 1}: use
modality k in window w or skip it. The selected modalities' recognition networks give window features
f_{w,k}; the fused window vector is [u_{w,1} f_{w,1}; ...; u_{w,K} f_{w,K}], and a contextual LSTM over
the windows fuses them into the segment representation that the head reads (the multilingual paper's
"contextual LSTM fusion", replacing AdaMML's average of per-segment predictions).
Loss: task loss + decision_weight * (mean over windows of sum_k u_{w,k} - target_modalities)^2, the
decision loss pulling the number of modalities used per window towards a target. At evaluation the policy
takes the argmax decision (no noise). A modality absent from a sample ("present" = 0) is never selected.

Defaults from AdaMML: Gumbel temperature 5 decayed by 0.965 per epoch (via `set_epoch`), a one-layer policy
LSTM of 256 units. Chosen here (not stated for this adaptation): 8 windows, recognition networks that are
two-layer MLPs (128 units) on each window's mean feature (the features are already extracted, so the
expensive per-modality backbone of the paper is the upstream extractor), contextual LSTM of 128 units,
dropout 0.3, target 2 modalities per window, decision weight 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.losses import modality_budget_loss
from models.nn.masking import last_valid, window_pool
from models.nn.modalities import available_modalities, check_modalities, modality_dim, require_keys
from models.nn.rnn import run_rnn
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES


@dataclass
class AdaMMLConfig(ConfigBase):
    """AdaMML hyperparameters (see the module docstring for which come from the paper)."""

    modalities_used: list[str] = field(default_factory=lambda: ["text", "audio", "visual"])  # those present
    n_windows: int = 8
    policy_embed: int = 64
    policy_hidden: int = 256
    feature_dim: int = 128
    fusion_hidden: int = 128
    dropout: float = 0.3
    temperature: float = 5.0
    temperature_decay: float = 0.965
    target_modalities: float = 2.0
    decision_weight: float = 1.0
    use_policy: bool = True          # ablation: False selects every present modality in every window


class AdaMML(SentimentModel):
    """Per-window Gumbel-softmax modality selection with contextual LSTM fusion."""

    name = "adamml"
    Config = AdaMMLConfig
    aligned = False
    ablatable = ("use_policy",)

    def __init__(self, config: AdaMMLConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.modalities_used, "modalities_used", self.name)
        if cfg.n_windows < 1:
            raise ConfigError(f"model.{self.name}.n_windows must be >= 1, got {cfg.n_windows}")
        self.used = available_modalities(spec, cfg.modalities_used, self.name)
        if not 0 <= cfg.target_modalities <= len(self.used):
            raise ConfigError(f"model.{self.name}.target_modalities must lie in [0, {len(self.used)}] (the number "
                              f"of modalities used: {', '.join(self.used)}), got {cfg.target_modalities}")
        if cfg.temperature <= 0 or not 0 < cfg.temperature_decay <= 1:
            raise ConfigError(f"model.{self.name}: temperature must be > 0 and temperature_decay in (0, 1]")
        dims = {m: modality_dim(spec, [m], self.name) for m in self.used}
        self.policy_embed = nn.ModuleDict({m: nn.Linear(dims[m], cfg.policy_embed) for m in self.used})
        self.policy_rnn = nn.LSTM(cfg.policy_embed * len(self.used), cfg.policy_hidden, 1, batch_first=True)
        self.policy_head = nn.Linear(cfg.policy_hidden, 2 * len(self.used))
        self.recognition = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(dims[m], cfg.feature_dim), nn.ReLU(), nn.Dropout(cfg.dropout),
                             nn.Linear(cfg.feature_dim, cfg.feature_dim), nn.ReLU())
            for m in self.used})
        self.fusion_rnn = nn.LSTM(cfg.feature_dim * len(self.used), cfg.fusion_hidden, 1, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.fusion_hidden, spec.n_outputs)
        self.tau = cfg.temperature

    def set_epoch(self, epoch: int) -> None:
        """Anneal the Gumbel-softmax temperature: tau = temperature * decay ** epoch."""
        self.tau = self.config.temperature * self.config.temperature_decay ** epoch

    def _decide(self, logits: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """Hard decisions (B, W, M): Gumbel-softmax straight-through when training, argmax otherwise."""
        b, w, _ = logits.shape
        pairs = logits.view(b, w, len(self.used), 2)
        if not self.config.use_policy:
            return available
        if self.training:
            onehot = nn.functional.gumbel_softmax(pairs, tau=self.tau, hard=True, dim=-1)
        else:
            onehot = nn.functional.one_hot(pairs.argmax(-1), 2).to(logits.dtype)
        return onehot[..., 1] * available

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Pool windows, decide modalities per window, fuse the selected features over windows."""
        cfg = self.config
        require_keys(batch, [k for m in self.used for k in (m, f"{m}_mask")], self.name)
        pooled, wmasks = [], []
        for m in self.used:
            p, wm = window_pool(batch[m].float(), batch[f"{m}_mask"].float(), cfg.n_windows)
            pooled.append(p)
            wmasks.append(wm)
        avail = torch.stack(wmasks, -1)                                           # (B, W, M)
        if "present" in batch:
            idx = [MODALITIES.index(m) for m in self.used]
            avail = avail * batch["present"].float()[:, idx].unsqueeze(1)
        window_mask = (avail.sum(-1) > 0).float()                                 # (B, W)
        # Windows are left-aligned (a short sequence leaves trailing windows empty), so the policy and the
        # fusion LSTM read each row's windows up to its last non-empty one.
        span = self._span_mask(window_mask)
        policy_in = torch.cat([self.policy_embed[m](p) for m, p in zip(self.used, pooled)], -1)
        policy_states, _ = run_rnn(self.policy_rnn, policy_in, span)
        logits = self.policy_head(policy_states)
        decisions = self._decide(logits, avail)
        feats = [self.recognition[m](p) * decisions[..., i:i + 1] for i, (m, p) in enumerate(zip(self.used, pooled))]
        fused_seq, _ = run_rnn(self.fusion_rnn, torch.cat(feats, -1), span)
        fused = last_valid(fused_seq, span)
        prediction = self.head(self.dropout(fused))
        rate = (decisions * window_mask.unsqueeze(-1)).sum((0, 1)) / window_mask.sum().clamp(min=1.0)
        per_row = (decisions * window_mask.unsqueeze(-1)).sum(1) / window_mask.sum(1, keepdim=True).clamp(min=1.0)
        return ModelOutput(prediction, {"fused": fused},
                           {"decisions": decisions, "window_mask": window_mask, "policy_logits": logits,
                            "selection_rate": dict(zip(self.used, rate.detach().tolist())),
                            "modality_selection": {m: per_row[:, i].detach() for i, m in enumerate(self.used)}})

    @staticmethod
    def _span_mask(window_mask: torch.Tensor) -> torch.Tensor:
        """1 for windows up to each row's last non-empty window (at least the first)."""
        w = window_mask.shape[1]
        pos = torch.arange(1, w + 1, device=window_mask.device, dtype=window_mask.dtype)
        last = (window_mask * pos).amax(-1, keepdim=True).clamp(min=1.0)
        return (pos.unsqueeze(0) <= last).to(window_mask.dtype)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """Task loss plus the weighted decision (modality budget) loss."""
        cfg = self.config
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        if cfg.use_policy and cfg.decision_weight > 0:
            terms["decision"] = cfg.decision_weight * modality_budget_loss(
                output.extras["decisions"], output.extras["window_mask"], cfg.target_modalities)
        return terms
