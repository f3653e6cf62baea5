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
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel, register_model
from models.losses import masked_mse
from models.sequence_ops import last_valid, require_keys, run_rnn
from pipeline.config import ConfigBase, ConfigError

MODALITIES = ("text", "audio", "visual")


class SequenceEncoder(nn.Module):
    """LSTM encoder over the valid steps of a (B, T, D) sequence: states (B, T, H) and its final (h, c)."""

    def __init__(self, input_dim: int, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_dim, hidden, n_layers, batch_first=True,
                           dropout=dropout if n_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Encode x; padded steps of the states are zeros."""
        out, state = run_rnn(self.rnn, x, mask)
        return out, state


class AttentionDecoder(nn.Module):
    """LSTM decoder with additive attention (Bahdanau et al., 2015) that emits a continuous sequence."""

    def __init__(self, hidden: int, output_dim: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.embed = nn.Linear(output_dim, hidden)
        self.rnn = nn.LSTM(2 * hidden, hidden, n_layers, batch_first=True,
                           dropout=dropout if n_layers > 1 else 0.0)
        self.att_keys = nn.Linear(hidden, hidden, bias=False)
        self.att_query = nn.Linear(hidden, hidden)
        self.att_score = nn.Linear(hidden, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, output_dim)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                steps: int, target: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode `steps` frames; returns (B, steps, output_dim) and attention weights (B, steps, T)."""
        b = memory.shape[0]
        keys = self.att_keys(memory)                                           # (B, T, H)
        invalid = memory_mask <= 0
        prev = memory.new_zeros(b, self.output_dim)
        outputs, weights = [], []
        h, c = state
        for t in range(steps):
            query = self.att_query(h[-1]).unsqueeze(1)                        # (B, 1, H)
            scores = self.att_score(torch.tanh(keys + query)).squeeze(-1)     # (B, T)
            scores = scores.masked_fill(invalid, torch.finfo(scores.dtype).min)
            alpha = torch.softmax(scores, dim=-1)
            context = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)         # (B, H)
            step_in = torch.cat([self.dropout(self.embed(prev)), context], dim=-1).unsqueeze(1)
            out, (h, c) = self.rnn(step_in, (h, c))
            frame = self.out(torch.cat([out.squeeze(1), context], dim=-1))
            outputs.append(frame)
            weights.append(alpha)
            if target is not None and teacher_forcing > 0 and torch.rand(()) < teacher_forcing:
                prev = target[:, t]
            else:
                prev = frame
        return torch.stack(outputs, 1), torch.stack(weights, 1)


class SentimentRNN(nn.Module):
    """Recurrent regressor/classifier over encoder states: LSTM, last valid state, dropout, linear."""

    def __init__(self, input_dim: int, hidden: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_dim, hidden, 1, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (prediction (B, n_outputs), summary vector (B, hidden))."""
        out, _ = run_rnn(self.rnn, states, mask)
        summary = last_valid(out, mask)
        return self.head(self.dropout(summary)), summary


class Translator(nn.Module):
    """One translation level: encoder over the source, attention decoder to the target."""

    def __init__(self, input_dim: int, output_dim: int, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.encoder = SequenceEncoder(input_dim, hidden, n_layers, dropout)
        self.decoder = AttentionDecoder(hidden, output_dim, n_layers, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None,
                teacher_forcing: float, decode: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder states (B, T, H) and the translation (B, T, D_out) (None when decode is False)."""
        states, final = self.encoder(x, mask)
        if not decode:
            return states, None
        translation, _ = self.decoder(states, mask, final, x.shape[1], target, teacher_forcing)
        return states, translation


def aligned_input(batch: dict[str, torch.Tensor], modalities: list[str], model: str) -> torch.Tensor:
    """Feature-wise concatenation of word-aligned modality sequences (B, T_w, sum D)."""
    keys = [f"aligned_{m}" for m in modalities]
    require_keys(batch, keys + ["aligned_mask"], model)
    return torch.cat([batch[k].float() for k in keys], dim=-1)


def check_modalities(names: list[str], field_name: str, model: str, allow_empty: bool = False) -> None:
    """Validate a config list of modality names."""
    if not names and not allow_empty:
        raise ConfigError(f"model.{model}.{field_name} must name at least one modality")
    bad = [n for n in names if n not in MODALITIES]
    if bad:
        raise ConfigError(f"model.{model}.{field_name}: unknown modality {', '.join(bad)}; "
                          f"choose from {', '.join(MODALITIES)}")


def modality_dim(spec: ModelSpec, modalities: list[str], model: str) -> int:
    """Summed feature dim of some modalities, with a clear error when the data lacks one."""
    missing = [m for m in modalities if m not in spec.dims]
    if missing:
        raise ConfigError(f"model {model!r} uses {', '.join(missing)} but the dataset has only "
                          f"{', '.join(sorted(spec.dims)) or 'no'} features")
    return sum(spec.dims[m] for m in modalities)


def available_modalities(spec: ModelSpec, wanted: list[str], model: str) -> list[str]:
    """The wanted modalities the dataset has, in canonical order; an error when it has none of them."""
    used = [m for m in MODALITIES if m in wanted and spec.dims.get(m)]
    if not used:
        raise ConfigError(f"model {model!r} uses {', '.join(wanted)} but the dataset has only "
                          f"{', '.join(sorted(spec.dims)) or 'no'} features")
    return used


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


@register_model
class Seq2Seq2Sentiment(SentimentModel):
    """Attention seq2seq modality translation, then an RNN regressor on the encoder states (two phases)."""

    name = "seq2seq"
    Config = Seq2SeqConfig
    modalities = ("text", "audio", "visual")
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


@register_model
class Seq2SeqConcat(Seq2Seq2Sentiment):
    """Seq2Seq2Sentiment translating the concatenation of two modalities into the third."""

    name = "seq2seq_concat"
    Config = Seq2SeqConcatConfig


@dataclass
class Seq2SeqConcatOutConfig(Seq2SeqConfig):
    """Concatenated-output variant: text -> [audio; visual]."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["audio", "visual"])


@register_model
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


@register_model
class Seq2SeqHier(Seq2Seq2Sentiment):
    """Hierarchical Seq2Seq2Sentiment: the level-1 encoder states are translated into the third modality."""

    name = "seq2seq_hier"
    Config = Seq2SeqHierConfig
