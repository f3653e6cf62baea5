"""Seq2Seq2Sentiment (Pham, Manzini, Liang, Poczos; ACL 2018 Grand Challenge workshop).

Modality translation (Sec. 4.1, Alg. 1): an attention sequence-to-sequence model translates one word-aligned
modality sequence X into another Y (e.g. text -> audio); its encoder carries a joint representation E_XY on
which a recurrent regressor predicts sentiment with MAE. The hierarchical model (Sec. 4.2, Alg. 2) translates
E_XY into a third modality Z with a second seq2seq model and regresses from its encoder, E_XYZ.

Training is the algorithms' sequential phases (`training_phases`), each with its own optimiser, schedule and
early stopping (`train.phases.<name>`), the next starting from the previous phase's best weights:
  translation   X -> Y: level 1 minimises the translation loss (best epoch: validation `loss:translation`);
  translation2  (hierarchical only) E_XY -> Z: level 2 with level 1 frozen (`loss:translation2`);
  regression    the RNN regressor on the frozen encoder states, MAE (`train.monitor`, e.g. mae).
A frozen level is run without gradients and in eval mode (no dropout), and no phase's update lists another
phase's parameters, so frozen levels do not change.

The five translation variants of Sec. 5.3 are configurations of this one class (source / target /
hierarchical_target, each a list of modalities concatenated feature-wise per word step), registered with their
defaults under their own names, and every row of Tables 2 and 3 is a named ablation row (`sentiflow ablate`,
labelled in Sec. 5.3's notation, e.g. "embed(T+A) -> V", "concat(T+V) -> A": no commas, so --components takes them):
  seq2seq              X -> Y                       T -> A            (Table 2, bimodal)
  seq2seq_hier         embed(X, Y) -> Z             embed(T, A) -> V  (Table 3, Alg. 2)
  seq2seq_concat       concat(X, Y) -> Z            concat(T, A) -> V
  seq2seq_concat_out   X -> concat(Y, Z)            T -> concat(A, V)
  seq2seq_concat_both  concat(X, Y) -> concat(X, Z)  concat(T, A) -> concat(T, V)  (text repeated, as the paper)
The paper's baseline, an LSTM on the word-level concatenation [w; a; v], is `word_lstm` (models/zoo/baselines.py);
it is this regressor on the features instead of the encoder states (Sec. 5.2: "not structural changes").

Named deviations (docs/fidelity/seq2seq.md): the translation loss is the MSE over the valid word steps, not
cross-entropy (Alg. 1-2 line 4/9: the features are continuous, there are no tokens to score), and decoding is
teacher-forced / greedy rather than beam search (Sec. 4.1: continuous frames cannot be beam-searched; only the
encoder is used downstream). Eq. 3 (the attention weights) is lost in the paper's text; it is read as
alpha = softmax_t(W_alpha^T h_t^K) with one W_alpha shared over the steps, as the sentence before it says.
An adapter for our features (their scales differ by three orders of magnitude: acoustic f0 in Hz beside MFCC
deltas): with `standardize` (default) each level's raw source and target features are standardised per feature
with the statistics of the training data (`RunningStandardizer`, fixed once the level is frozen); the paper
does not say how its inputs were scaled. Choices the paper leaves open, made here: LSTM encoder/decoder with Bahdanau (additive) attention over the
encoder states (Fig. 1), the decoder's input is the previous target frame (zeros at t=0) with teacher forcing
ratio 0.5 while training and its own prediction otherwise, hidden size 128, one layer, dropout 0.2, a
one-layer LSTM regressor of size 64 reading the encoder states (their last valid state, or the attention
pooling of Eqs. 3-5 with `attention_pooling`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, OptimStep, SentimentModel, TrainingPhase
from models.nn.losses import masked_mse
from models.nn.modalities import aligned_input, check_modalities, modality_dim
from models.nn.translation import SentimentRNN, Translator
from pipeline.config import ConfigBase
from pipeline.modalities import MODALITY_CODES

TRANSLATION, TRANSLATION2, REGRESSION = "translation", "translation2", "regression"   # Alg. 2's phases, in order
_BY_CODE = {code: m for m, code in MODALITY_CODES.items()}


def _modalities(code: str) -> list[str]:
    """Modalities of a table code in the order written ("AT" -> audio, text: the concatenation order)."""
    return [_BY_CODE[c] for c in code]


def _row(source: str, target: str, hierarchical: str = "") -> tuple[str, dict[str, Any]]:
    """A row of Tables 2-3 as (the paper's label, config overrides)."""
    def side(code: str) -> str:
        return code if len(code) == 1 else f"concat({'+'.join(code)})"

    label = f"embed({source}+{target}) -> {hierarchical}" if hierarchical else f"{side(source)} -> {side(target)}"
    return label, {"source": _modalities(source), "target": _modalities(target),
                   "hierarchical_target": _modalities(hierarchical)}


# Table 2 (bimodal, Alg. 1) and Table 3 (trimodal: hierarchical Alg. 2, then the concatenation variants)
PAPER_ROWS: dict[str, dict[str, Any]] = dict(_row(*r) for r in [
    ("T", "V"), ("T", "A"), ("A", "T"), ("A", "V"), ("V", "T"), ("V", "A"),
    ("T", "V", "A"), ("T", "A", "V"), ("A", "V", "T"), ("A", "T", "V"), ("V", "T", "A"), ("V", "A", "T"),
    ("TV", "A"), ("AT", "V"), ("VA", "T"), ("T", "AV"), ("A", "TV"), ("TA", "TV"), ("TV", "TA"),
])


@dataclass
class Seq2SeqConfig(ConfigBase):
    """Seq2Seq2Sentiment hyperparameters (see the module docstring for what the paper leaves open)."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["audio"])
    hierarchical_target: list[str] = field(default_factory=list)   # empty: one translation level (Alg. 1)
    hidden_size: int = 128
    n_layers: int = 1
    dropout: float = 0.2
    regressor_hidden: int = 64
    regressor_layers: int = 1             # K of Eqs. 1-2
    attention_pooling: bool = False       # Eqs. 3-5: soft attention over the regressor's last layer
    teacher_forcing: float = 0.5
    standardize: bool = True              # adapter: raw features (source, targets) standardised per feature


class Seq2Seq2Sentiment(SentimentModel):
    """Attention seq2seq modality translation (one or two levels), then an RNN regressor, in sequential phases."""

    name = "seq2seq"
    Config = Seq2SeqConfig
    aligned = True
    ablations = {**PAPER_ROWS, "attention pooling": {"attention_pooling": True}}

    def __init__(self, config: Seq2SeqConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.source, "source", self.name)
        check_modalities(cfg.target, "target", self.name)
        check_modalities(cfg.hierarchical_target, "hierarchical_target", self.name, allow_empty=True)
        d_in = modality_dim(spec, cfg.source, self.name)
        d_out = modality_dim(spec, cfg.target, self.name)
        self.level1 = Translator(d_in, d_out, cfg.hidden_size, cfg.n_layers, cfg.dropout, cfg.standardize,
                                 cfg.standardize)
        self.level2: Translator | None = None
        if cfg.hierarchical_target:
            d_z = modality_dim(spec, cfg.hierarchical_target, self.name)
            self.level2 = Translator(cfg.hidden_size, d_z, cfg.hidden_size, cfg.n_layers, cfg.dropout,
                                     standardize_target=cfg.standardize)
        self.regressor = SentimentRNN(cfg.hidden_size, cfg.regressor_hidden, spec.n_outputs, cfg.dropout,
                                      cfg.regressor_layers, cfg.attention_pooling)
        self.phase = REGRESSION     # outside training (scoring, a loaded run): encode and regress, decode nothing

    def phase_modules(self) -> dict[str, nn.Module]:
        """Phase name -> the part it trains, in Alg. 2's order."""
        parts: dict[str, nn.Module] = {TRANSLATION: self.level1}
        if self.level2 is not None:
            parts[TRANSLATION2] = self.level2
        parts[REGRESSION] = self.regressor
        return parts

    def training_phases(self) -> list[TrainingPhase]:
        """Alg. 1 / 2: translation, (translation2,) regression; each update moves only its own part."""
        monitors = {TRANSLATION: "loss:translation", TRANSLATION2: "loss:translation2", REGRESSION: ""}
        terms = {TRANSLATION: "translation", TRANSLATION2: "translation2", REGRESSION: "task"}
        return [TrainingPhase(name, [OptimStep(name, list(part.parameters()), (terms[name],))], monitors[name])
                for name, part in self.phase_modules().items()]

    def set_phase(self, name: str) -> None:
        """Enter phase `name`: the levels trained before it are frozen (eval mode: no dropout)."""
        order = list(self.phase_modules())
        if name not in order:
            raise ValueError(f"{self.name} has no training phase {name!r}; its phases are {', '.join(order)}")
        self.phase = name
        for earlier in order[: order.index(name)]:
            self.phase_modules()[earlier].eval()

    def _trains(self, phase: str) -> torch.autograd.grad_mode.set_grad_enabled:
        """Gradients only through the part the current phase trains (frozen and later parts run without)."""
        return torch.set_grad_enabled(torch.is_grad_enabled() and self.phase == phase)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Encode through the levels; decode the level the current phase trains; regress from the last level."""
        cfg = self.config
        x = aligned_input(batch, cfg.source, self.name)
        mask = batch["aligned_mask"].float()
        tf = cfg.teacher_forcing if self.training else 0.0
        extras: dict[str, Any] = {}
        decode = self.phase == TRANSLATION
        y = aligned_input(batch, cfg.target, self.name) if decode else None
        with self._trains(TRANSLATION):
            states, y_hat, y = self.level1(x, mask, y, tf, decode)
        if y_hat is not None:
            extras.update(translation=y_hat, translation_target=y)
        if self.level2 is not None:
            decode = self.phase == TRANSLATION2
            z = aligned_input(batch, cfg.hierarchical_target, self.name) if decode else None
            with self._trains(TRANSLATION2):
                states, z_hat, z = self.level2(states, mask, z, tf, decode)
            if z_hat is not None:
                extras.update(translation2=z_hat, translation2_target=z)
        with self._trains(REGRESSION):
            prediction, summary, alpha = self.regressor(states, mask)
        if alpha is not None:
            extras["attention"] = alpha
        return ModelOutput(prediction, {"fused": summary, "encoder_states": states}, extras)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """The task loss (MAE with the recipe) and the translation MSE of the level being trained."""
        mask = batch["aligned_mask"].float()
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        for key in (TRANSLATION, TRANSLATION2):
            if key in output.extras:
                terms[key] = masked_mse(output.extras[key], output.extras[f"{key}_target"], mask)
        return terms


@dataclass
class Seq2SeqConcatConfig(Seq2SeqConfig):
    """Concatenated-input variant: concat(text, audio) -> visual."""

    source: list[str] = field(default_factory=lambda: ["text", "audio"])
    target: list[str] = field(default_factory=lambda: ["visual"])


class Seq2SeqConcat(Seq2Seq2Sentiment):
    """Seq2Seq2Sentiment translating the concatenation of two modalities into the third."""

    name = "seq2seq_concat"
    Config = Seq2SeqConcatConfig


@dataclass
class Seq2SeqConcatOutConfig(Seq2SeqConfig):
    """Concatenated-output variant: text -> concat(audio, visual)."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["audio", "visual"])


class Seq2SeqConcatOut(Seq2Seq2Sentiment):
    """Seq2Seq2Sentiment translating one modality into the concatenation of the other two."""

    name = "seq2seq_concat_out"
    Config = Seq2SeqConcatOutConfig


@dataclass
class Seq2SeqConcatBothConfig(Seq2SeqConfig):
    """Concatenation to concatenation, text repeated (Sec. 5.3): concat(text, audio) -> concat(text, visual)."""

    source: list[str] = field(default_factory=lambda: ["text", "audio"])
    target: list[str] = field(default_factory=lambda: ["text", "visual"])


class Seq2SeqConcatBoth(Seq2Seq2Sentiment):
    """Seq2Seq2Sentiment translating a concatenation of two modalities into another pair sharing one (text)."""

    name = "seq2seq_concat_both"
    Config = Seq2SeqConcatBothConfig


@dataclass
class Seq2SeqHierConfig(Seq2SeqConfig):
    """Hierarchical trimodal variant (Alg. 2): text -> audio, then embed(text, audio) -> visual."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["audio"])
    hierarchical_target: list[str] = field(default_factory=lambda: ["visual"])


class Seq2SeqHier(Seq2Seq2Sentiment):
    """Hierarchical Seq2Seq2Sentiment: the level-1 encoder states are translated into the third modality."""

    name = "seq2seq_hier"
    Config = Seq2SeqHierConfig
