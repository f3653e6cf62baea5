"""AdaMML (Panda et al., ICCV 2021) with contextual LSTM fusion, as the multilingual MSA paper uses it.

Paper: ../shared/papers/multilingual-msa.md, Section 5.2 (model, losses), 7.2 (Table 1, Figure 4, dropout
placements); the fidelity table is docs/fidelity/adamml.md. Each segment's valid steps are split into W equal
windows and each modality's window mean x_{l,m} is taken. The policy network (AdaMML's: a per-modality
embedding of the window, an LSTM over the windows, two logits per modality) decides PL_{l,m} in {0, 1} with a
Gumbel-softmax sample (straight-through hard one-hot, temperature tau, annealed per epoch): use modality m in
window l or zero it out ("zeroing out features from specific modalities entirely within each window"). The
gated windows go to Poria et al.'s hierarchical contextual LSTM fusion: one contextual LSTM per modality over
the windows, their outputs concatenated into the final contextual LSTM, whose last output (many-to-one) is
the sentiment feature the head reads. At evaluation the policy takes its argmax decision (no noise).

Losses (Section 5.2): the task loss (MAE in the paper: `task.loss: l1` in the recipe) and the optional
decision loss DL = 1/N sum_i 1/L_i sum_l |sum_m PL_{l,m} - Target| (`decision_loss`, `target_modalities`).
Dropout (7.2, Figure 4) sits on the policy network's inputs (`policy_dropout`) and on the fusion network's
inputs (`fusion_dropout`); the paper's "*" variant has only the latter. A modality absent from a sample
("present" = 0) is never selected.

From AdaMML: Gumbel temperature 5 decayed by 0.965 per epoch, a one-layer policy LSTM of 256 units. The paper
is silent on (chosen, documented in the fidelity table): 8 windows, policy embedding 64, contextual LSTMs of
128 units, dropout rate 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.losses import decision_loss
from models.nn.masking import last_valid, window_pool
from models.nn.modalities import available_modalities, check_modalities, modality_dim, require_keys
from models.nn.rnn import run_rnn
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES


@dataclass
class AdaMMLConfig(ConfigBase):
    """AdaMML + contextual LSTM hyperparameters (see the module docstring for which come from the papers)."""

    modalities_used: list[str] = field(default_factory=lambda: ["text", "audio", "visual"])  # those present
    n_windows: int = 8
    policy_embed: int = 64
    policy_hidden: int = 256
    context_hidden: int = 128        # each modality's contextual LSTM
    fusion_hidden: int = 128         # the final contextual LSTM
    unimodal_context: bool = True    # Poria's hierarchy; False: one contextual LSTM over the concatenated windows
    dropout: float = 0.3
    policy_dropout: bool = True      # dropout on the policy network's inputs (Figure 4, first FR -> FR)
    fusion_dropout: bool = True      # dropout on the fusion network's inputs (both figures)
    temperature: float = 5.0
    temperature_decay: float = 0.965
    decision_loss: bool = False      # Table 1 "No DL target"; True with target_modalities 2 = "DL target=2"
    target_modalities: float = 2.0
    decision_weight: float = 1.0     # the paper adds DL to the task loss unweighted
    use_policy: bool = True          # ablation: False selects every present modality in every window


class AdaMML(SentimentModel):
    """Per-window Gumbel-softmax modality selection with hierarchical contextual LSTM fusion."""

    name = "adamml"
    Config = AdaMMLConfig
    aligned = False
    ablatable = ("use_policy", "policy_dropout", "fusion_dropout", "unimodal_context")
    # Table 1's AdaMML rows and Figure 4's dropout variant
    ablations = {
        "No DL target": {"decision_loss": False},
        "DL target=2": {"decision_loss": True, "target_modalities": 2.0},
        "dropout on fusion only": {"policy_dropout": False, "fusion_dropout": True},
    }

    def __init__(self, config: AdaMMLConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.modalities_used, "modalities_used", self.name)
        if cfg.n_windows < 1:
            raise ConfigError(f"model.{self.name}.n_windows must be >= 1, got {cfg.n_windows}")
        self.used = available_modalities(spec, cfg.modalities_used, self.name)
        if cfg.decision_loss and not 0 <= cfg.target_modalities <= len(self.used):
            raise ConfigError(f"model.{self.name}.target_modalities must lie in [0, {len(self.used)}] (the number "
                              f"of modalities used: {', '.join(self.used)}), got {cfg.target_modalities}")
        if cfg.temperature <= 0 or not 0 < cfg.temperature_decay <= 1:
            raise ConfigError(f"model.{self.name}: temperature must be > 0 and temperature_decay in (0, 1]")
        if not 0 <= cfg.dropout < 1:
            raise ConfigError(f"model.{self.name}.dropout must lie in [0, 1), got {cfg.dropout}")
        dims = {m: modality_dim(spec, [m], self.name) for m in self.used}
        self.policy_embed = nn.ModuleDict({m: nn.Linear(dims[m], cfg.policy_embed) for m in self.used})
        self.policy_rnn = nn.LSTM(cfg.policy_embed * len(self.used), cfg.policy_hidden, 1, batch_first=True)
        self.policy_head = nn.Linear(cfg.policy_hidden, 2 * len(self.used))
        if cfg.unimodal_context:
            self.context_rnn = nn.ModuleDict({m: nn.LSTM(dims[m], cfg.context_hidden, 1, batch_first=True)
                                              for m in self.used})
            fusion_in = cfg.context_hidden * len(self.used)
        else:
            fusion_in = sum(dims.values())
        self.fusion_rnn = nn.LSTM(fusion_in, cfg.fusion_hidden, 1, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.fusion_hidden, spec.n_outputs)
        self.tau = cfg.temperature

    def set_epoch(self, epoch: int) -> None:
        """Anneal the Gumbel-softmax temperature: tau = temperature * decay ** epoch."""
        self.tau = self.config.temperature * self.config.temperature_decay ** epoch

    def _decide(self, logits: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """Hard decisions PL (B, W, M): Gumbel-softmax straight-through when training, argmax otherwise."""
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
        """Pool windows, decide modalities per window, fuse the kept windows with the contextual LSTMs."""
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
        # contextual LSTMs read each row's windows up to its last non-empty one.
        span = self._span_mask(window_mask)
        policy_in = [self.dropout(p) if cfg.policy_dropout else p for p in pooled]
        policy_states, _ = run_rnn(self.policy_rnn, torch.cat(
            [self.policy_embed[m](p) for m, p in zip(self.used, policy_in)], -1), span)
        logits = self.policy_head(policy_states)
        decisions = self._decide(logits, avail)
        kept = [p * decisions[..., i:i + 1] for i, p in enumerate(pooled)]         # skipped windows are zeros
        if cfg.fusion_dropout:
            kept = [self.dropout(k) for k in kept]
        if cfg.unimodal_context:
            kept = [run_rnn(self.context_rnn[m], k, span)[0] for m, k in zip(self.used, kept)]
        fused_seq, _ = run_rnn(self.fusion_rnn, torch.cat(kept, -1), span)
        fused = last_valid(fused_seq, span)                                       # many-to-one: the last output
        prediction = self.head(fused)
        per_row = (decisions * window_mask.unsqueeze(-1)).sum(1) / window_mask.sum(1, keepdim=True).clamp(min=1.0)
        rate = (decisions * window_mask.unsqueeze(-1)).sum((0, 1)) / window_mask.sum().clamp(min=1.0)
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
        """The task loss, plus the weighted decision loss when it is switched on."""
        cfg = self.config
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        if cfg.use_policy and cfg.decision_loss and cfg.decision_weight > 0:
            terms["decision"] = cfg.decision_weight * decision_loss(
                output.extras["decisions"], output.extras["window_mask"], cfg.target_modalities)
        return terms
