"""Seq2Seq2Sentiment (Pham, Liang, Manzini, Morency, Poczos; ACL 2018 Grand Challenge workshop).

Modality translation: an attention sequence-to-sequence model learns to translate one word-aligned modality
sequence X into another Y (e.g. text -> audio); its encoder states then carry a joint representation, on
which a recurrent regressor predicts sentiment trained with MAE. Training has two phases (paper):
  phase 1 (epochs < `translation_epochs`): minimise the translation MSE  sum_t ||y_t - y^_t||^2 / T;
  phase 2 (later epochs): train the RNN regressor on the encoder states with MAE; the translation network
  is frozen (encoder states detached) unless `freeze_encoder_phase2` is false.
The trainer reaches the phases through `set_epoch(epoch)`; `translation_epochs: 0` trains the regressor
and (with `phase2_translation_weight > 0`) the translation jointly from the start.

Variants (all one class, chosen by config; registered with their defaults under separate names):
  seq2seq         bimodal X -> Y                     source [text]          target [audio]
  seq2seq_concat  concatenated input [X;Y] -> Z      source [text, audio]   target [visual]
  seq2seq_concat_out  X -> concatenated [Y;Z]        source [text]          target [audio, visual]
  seq2seq_hier    hierarchical: X -> Y, then the level-1 encoder states embed(X, Y) -> Z  (regressor on
                  the level-2 encoder states)        source [text]  target [audio]  hierarchical_target [visual]
Concatenation is feature-wise per word step (the features are word-aligned, so all share T).

Details the paper leaves out, chosen here: LSTM encoder/decoder, Bahdanau (additive) attention over the
encoder states, the decoder's input is the previous target frame (zeros at t=0) with teacher forcing ratio
0.5 while training and its own prediction otherwise, hidden size 128, one layer, dropout 0.2, a one-layer
LSTM regressor of size 64 reading the encoder states, 5 translation epochs before the regression phase
(kept below the trainer's early-stopping patience of 10, so that the regression phase gets to improve on
the untrained regressor's validation score before early stopping can end the run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.losses import masked_mse
from models.nn.modalities import aligned_input, check_modalities, modality_dim
from models.nn.translation import SentimentRNN, Translator
from pipeline.config import ConfigBase, ConfigError


@dataclass
class Seq2SeqConfig(ConfigBase):
    """Seq2Seq2Sentiment hyperparameters (see the module docstring for what the paper leaves open)."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["audio"])
    hierarchical_target: list[str] = field(default_factory=list)   # empty: one translation level
    hidden_size: int = 128
    n_layers: int = 1
    dropout: float = 0.2
    regressor_hidden: int = 64
    teacher_forcing: float = 0.5
    translation_epochs: int = 5           # phase boundary: epochs of translation before regression
    translation_weight: float = 1.0       # weight of the translation MSE in phase 1
    phase2_translation_weight: float = 0.0
    freeze_encoder_phase2: bool = True


class Seq2Seq2Sentiment(SentimentModel):
    """Attention seq2seq modality translation, then an RNN regressor on the encoder states (two phases)."""

    name = "seq2seq"
    Config = Seq2SeqConfig
    aligned = True
    ablatable = ("hierarchical_target", "phase2_translation_weight")

    def __init__(self, config: Seq2SeqConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.source, "source", self.name)
        check_modalities(cfg.target, "target", self.name)
        check_modalities(cfg.hierarchical_target, "hierarchical_target", self.name, allow_empty=True)
        if cfg.translation_epochs < 0:
            raise ConfigError(f"model.{self.name}.translation_epochs must be >= 0, got {cfg.translation_epochs}")
        d_in = modality_dim(spec, cfg.source, self.name)
        d_out = modality_dim(spec, cfg.target, self.name)
        self.level1 = Translator(d_in, d_out, cfg.hidden_size, cfg.n_layers, cfg.dropout)
        self.level2: Translator | None = None
        if cfg.hierarchical_target:
            d_z = modality_dim(spec, cfg.hierarchical_target, self.name)
            self.level2 = Translator(cfg.hidden_size, d_z, cfg.hidden_size, cfg.n_layers, cfg.dropout)
        self.regressor = SentimentRNN(cfg.hidden_size, cfg.regressor_hidden, spec.n_outputs, cfg.dropout)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Switch from the translation phase to the regression phase at `translation_epochs`."""
        self.epoch = epoch

    @property
    def in_translation_phase(self) -> bool:
        """True during phase 1 (translation only)."""
        return self.epoch < self.config.translation_epochs

    def _translation_weight(self) -> float:
        return self.config.translation_weight if self.in_translation_phase else self.config.phase2_translation_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Translate (when training needs it), then regress from the last level's encoder states."""
        cfg = self.config
        x = aligned_input(batch, cfg.source, self.name)
        mask = batch["aligned_mask"].float()
        decode = self.training and self._translation_weight() > 0
        y = aligned_input(batch, cfg.target, self.name) if decode else None
        tf = cfg.teacher_forcing if self.training else 0.0
        states, y_hat = self.level1(x, mask, y, tf, decode)
        extras: dict[str, torch.Tensor] = {}
        if y_hat is not None:
            extras["translation"] = y_hat
            extras["translation_target"] = y
        if self.level2 is not None:
            z = aligned_input(batch, cfg.hierarchical_target, self.name) if decode else None
            states, z_hat = self.level2(states, mask, z, tf, decode)
            if z_hat is not None:
                extras["translation2"] = z_hat
                extras["translation2_target"] = z
        freeze = cfg.freeze_encoder_phase2 and cfg.translation_epochs > 0 and not self.in_translation_phase
        reg_in = states.detach() if freeze else states
        prediction, summary = self.regressor(reg_in, mask)
        return ModelOutput(prediction, {"fused": summary, "encoder_states": states}, extras)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """Phase 1: translation MSE (task logged, not trained); phase 2: MAE task loss (+ optional translation)."""
        mask = batch["aligned_mask"].float()
        task = self.task_loss(output.prediction, batch["label"])
        terms: dict[str, torch.Tensor] = {"task": task.detach() if self.in_translation_phase else task}
        weight = self._translation_weight()
        if weight > 0 and "translation" in output.extras:
            trans = masked_mse(output.extras["translation"], output.extras["translation_target"], mask)
            if "translation2" in output.extras:
                trans = trans + masked_mse(output.extras["translation2"], output.extras["translation2_target"], mask)
            terms["translation"] = weight * trans
        return terms


@dataclass
class Seq2SeqConcatConfig(Seq2SeqConfig):
    """Concatenated-input variant: [text; audio] -> visual."""

    source: list[str] = field(default_factory=lambda: ["text", "audio"])
    target: list[str] = field(default_factory=lambda: ["visual"])


class Seq2SeqConcat(Seq2Seq2Sentiment):
    """Seq2Seq2Sentiment translating the concatenation of two modalities into the third."""

    name = "seq2seq_concat"
    Config = Seq2SeqConcatConfig


@dataclass
class Seq2SeqConcatOutConfig(Seq2SeqConfig):
    """Concatenated-output variant: text -> [audio; visual]."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["audio", "visual"])


class Seq2SeqConcatOut(Seq2Seq2Sentiment):
    """Seq2Seq2Sentiment translating one modality into the concatenation of the other two."""

    name = "seq2seq_concat_out"
    Config = Seq2SeqConcatOutConfig


@dataclass
class Seq2SeqHierConfig(Seq2SeqConfig):
    """Hierarchical trimodal variant: text -> audio, then embed(text, audio) -> visual."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["audio"])
    hierarchical_target: list[str] = field(default_factory=lambda: ["visual"])


class Seq2SeqHier(Seq2Seq2Sentiment):
    """Hierarchical Seq2Seq2Sentiment: the level-1 encoder states are translated into the third modality."""

    name = "seq2seq_hier"
    Config = Seq2SeqHierConfig
