"""MCTN: Multimodal Cyclic Translation Network (Pham, Liang, Manzini, Morency, Poczos; AAAI 2019).

Equations (paper, Sec. 3): a source modality X_S is encoded, E_{S<->T} = enc(X_S), and decoded into the
target, X^_T = dec_T(E); the cyclic step encodes the *translated* target and decodes back to the source,
X^_S = dec_S(enc(X^_T)). With a third modality the model is hierarchical: the level-1 encoder states
(the joint representation of S and T) are encoded again and translated into X_U (no cycle at level 2).
An RNN on the last level's encoder states predicts sentiment. The objective is
    J = J_p + lambda_t * (J_t + J_t2) + lambda_c * J_c
with J_t, J_t2 the translation MSEs, J_c the cycle-reconstruction MSE and J_p the task loss (MAE for
regression). At test time only the source modality is needed (the encoder), which is MCTN's point: the
target modalities are used only as translation targets during training. Used as a baseline in the
multilingual paper on word-aligned features.

Defaults: lambda_t = lambda_c = 0.1, hidden size 512 for the encoder/decoder, 300-d modality embeddings,
regressor hidden 256, dropout 0.4, two recurrent layers (these follow the public PyTorch re-implementation
of MCTN on aligned CMU-MOSEI, since the paper defers them to its search space).
Choices the paper leaves open, made here: the encoder is shared by the forward and the cyclic translation
(each modality enters through its own linear embedding, since their dims differ); LSTMs with Bahdanau
attention; teacher forcing 0.5 while training; one joint training phase (the paper trains end to end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.losses import masked_mse
from models.nn.modalities import aligned_input, check_modalities, modality_dim
from models.nn.translation import AttentionDecoder, SentimentRNN, SequenceEncoder
from pipeline.config import ConfigBase, ConfigError


@dataclass
class MCTNConfig(ConfigBase):
    """MCTN hyperparameters; `target` has one modality (bimodal) and `hierarchical_target` an optional third."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["visual"])
    hierarchical_target: list[str] = field(default_factory=lambda: ["audio"])
    embed_dim: int = 300
    hidden_size: int = 512
    n_layers: int = 2
    dropout: float = 0.4
    regressor_hidden: int = 256
    teacher_forcing: float = 0.5
    lambda_t: float = 0.1          # translation loss weight
    lambda_c: float = 0.1          # cycle-consistency loss weight


class MCTN(SentimentModel):
    """Cyclic translation source <-> target (+ hierarchical translation to a third modality), RNN regressor."""

    name = "mctn"
    Config = MCTNConfig
    aligned = True
    ablatable = ("lambda_c", "hierarchical_target")

    def __init__(self, config: MCTNConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.source, "source", self.name)
        check_modalities(cfg.target, "target", self.name)
        check_modalities(cfg.hierarchical_target, "hierarchical_target", self.name, allow_empty=True)
        if cfg.lambda_t < 0 or cfg.lambda_c < 0:
            raise ConfigError(f"model.{self.name}.lambda_t and lambda_c must be >= 0")
        d_s = modality_dim(spec, cfg.source, self.name)
        d_t = modality_dim(spec, cfg.target, self.name)
        self.embed_source = nn.Linear(d_s, cfg.embed_dim)
        self.embed_target = nn.Linear(d_t, cfg.embed_dim)
        self.encoder = SequenceEncoder(cfg.embed_dim, cfg.hidden_size, cfg.n_layers, cfg.dropout)
        self.decode_target = AttentionDecoder(cfg.hidden_size, d_t, cfg.n_layers, cfg.dropout)
        self.decode_source = AttentionDecoder(cfg.hidden_size, d_s, cfg.n_layers, cfg.dropout)
        self.encoder2: SequenceEncoder | None = None
        self.decode_third: AttentionDecoder | None = None
        if cfg.hierarchical_target:
            d_u = modality_dim(spec, cfg.hierarchical_target, self.name)
            self.encoder2 = SequenceEncoder(cfg.hidden_size, cfg.hidden_size, cfg.n_layers, cfg.dropout)
            self.decode_third = AttentionDecoder(cfg.hidden_size, d_u, cfg.n_layers, cfg.dropout)
        self.regressor = SentimentRNN(cfg.hidden_size, cfg.regressor_hidden, spec.n_outputs, cfg.dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Encode the source (and, while training, translate forward, cyclically back, and to the third)."""
        cfg = self.config
        x_s = aligned_input(batch, cfg.source, self.name)
        mask = batch["aligned_mask"].float()
        steps = x_s.shape[1]
        tf = cfg.teacher_forcing if self.training else 0.0
        states, final = self.encoder(self.embed_source(x_s), mask)
        extras: dict[str, torch.Tensor] = {}
        translate = self.training and (cfg.lambda_t > 0 or cfg.lambda_c > 0)
        if translate:
            x_t = aligned_input(batch, cfg.target, self.name)
            x_t_hat, _ = self.decode_target(states, mask, final, steps, x_t, tf)
            extras.update(translation=x_t_hat, translation_target=x_t)
            if cfg.lambda_c > 0:
                back_states, back_final = self.encoder(self.embed_target(x_t_hat), mask)
                x_s_hat, _ = self.decode_source(back_states, mask, back_final, steps, x_s, tf)
                extras.update(cycle=x_s_hat, cycle_target=x_s)
        if self.encoder2 is not None:
            states, final2 = self.encoder2(states, mask)
            if translate and cfg.lambda_t > 0:
                x_u = aligned_input(batch, cfg.hierarchical_target, self.name)
                x_u_hat, _ = self.decode_third(states, mask, final2, steps, x_u, tf)
                extras.update(translation2=x_u_hat, translation2_target=x_u)
        prediction, summary, _ = self.regressor(states, mask)
        return ModelOutput(prediction, {"fused": summary, "encoder_states": states}, extras)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """J_p (task), lambda_t * translation MSE(s) and lambda_c * cycle MSE."""
        cfg = self.config
        mask = batch["aligned_mask"].float()
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        ex = output.extras
        if "translation" in ex and cfg.lambda_t > 0:
            trans = masked_mse(ex["translation"], ex["translation_target"], mask)
            if "translation2" in ex:
                trans = trans + masked_mse(ex["translation2"], ex["translation2_target"], mask)
            terms["translation"] = cfg.lambda_t * trans
        if "cycle" in ex:
            terms["cycle"] = cfg.lambda_c * masked_mse(ex["cycle"], ex["cycle_target"], mask)
        return terms
