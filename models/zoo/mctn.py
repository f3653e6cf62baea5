"""MCTN: Multimodal Cyclic Translation Network (Pham, Liang, Manzini, Morency, Poczos; AAAI 2019), as the
multilingual MSA paper uses it (Sec. 6.1.1).

A source modality X_S is encoded, E = f_e(X_S), and decoded into the target, X^_T = f_d(E) (Eq. 9); the cycle
encodes the *translated* target with the same encoder and decodes it back with the same decoder,
X^_S = f_d(f_e(X^_T)) (Eq. 10). A prediction RNN reads E and its last step gives y^ (Eq. 11). One encoder and one
decoder serve both directions because every modality lives in one zero-padded shared feature space: each
modality's features occupy their own slice of a vector as wide as all of them together, the rest zeros
("pads the feature dimension of each modality with 0s ... occupying different subspaces"). The model trains end
to end on L = L_p + lambda_t L_t + lambda_c L_c (Eq. 12) with lambda_t = lambda_c = 0.5 for the bimodal model and
0.3 for the trimodal ones ("to account for the added translation and cycle losses").

Trimodal, hierarchical (the default): a second seq2seq model cyclically translates between E_{S<->T} and a third
modality X_T' in its own padded space [E; X_T'] (E = the level-1 encoder states), and the prediction RNN reads
its encoder states E_{(S<->T)<->T'}; the loss adds lambda_t L_t2 + lambda_c L_c2. Trimodal, shared encoder
(`shared_encoder: true`): one encoder for X_S and two decoders, one per target (T and T'), from the same
embedding E_{S<->T,T'}, which feeds the prediction RNN; each target's cycle goes back through the shared
encoder and that target's decoder. At test time only the source modality is needed.

An adapter for our features (scales differing by three orders of magnitude): with `standardize` (default) each
modality's raw features are standardised per feature with the training data's statistics (`RunningStandardizer`)
before they are padded into the shared space. Named deviations and choices (docs/fidelity/mctn.md): the translation and cycle MSEs are over the whole padded
vector (the decoder also learns the zeros outside the target's slice); the level-2 cycle reconstructs the
level-1 states with their gradient (the objective is trained end to end); in the shared-encoder variant each
cycle uses its target's decoder (the paper does not say). Choices the papers leave open: LSTMs with Bahdanau
attention, teacher forcing 0.5 while training, hidden size 512, two recurrent layers, a one-layer prediction
LSTM of size 256, dropout 0.4 (sizes of the public PyTorch re-implementation of MCTN on aligned CMU-MOSEI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.layers import RunningStandardizer
from models.nn.losses import masked_mse
from models.nn.modalities import aligned_input, check_modalities, modality_dim
from models.nn.translation import AttentionDecoder, SentimentRNN, SequenceEncoder
from pipeline.config import ConfigBase, ConfigError

BIMODAL_LAMBDA, TRIMODAL_LAMBDA = 0.5, 0.3     # Sec. 6.1.1, "Training details"


class PaddedSpace:
    """A zero-padded shared feature space: each named part occupies its own slice, in the order given."""

    def __init__(self, widths: dict[str, int]) -> None:
        self.width = sum(widths.values())
        self.slices: dict[str, tuple[int, int]] = {}
        start = 0
        for name, w in widths.items():
            self.slices[name] = (start, start + w)
            start += w

    def embed(self, part: str, x: torch.Tensor) -> torch.Tensor:
        """(B, T, width of `part`) -> (B, T, width): the features in the part's slice, zeros elsewhere."""
        start, end = self.slices[part]
        if x.shape[-1] != end - start:
            raise ValueError(f"part {part!r} is {end - start} wide, got features of width {x.shape[-1]}")
        return F.pad(x, (start, self.width - end))


@dataclass
class MCTNConfig(ConfigBase):
    """MCTN hyperparameters: source <-> target, and `second_target` the third modality of a trimodal model."""

    source: list[str] = field(default_factory=lambda: ["text"])
    target: list[str] = field(default_factory=lambda: ["audio"])
    second_target: list[str] = field(default_factory=lambda: ["visual"])   # [] = bimodal
    shared_encoder: bool = False   # trimodal: one encoder, a decoder per target (else hierarchical, two levels)
    level2_cycle: bool = True      # hierarchical: the second level translates cyclically too
    hidden_size: int = 512
    n_layers: int = 2
    dropout: float = 0.4
    regressor_hidden: int = 256
    teacher_forcing: float = 0.5
    lambda_t: float | None = None  # translation loss weight; None: 0.5 bimodal, 0.3 trimodal
    lambda_c: float | None = None  # cycle loss weight; None: 0.5 bimodal, 0.3 trimodal
    standardize: bool = True       # adapter: each modality's raw features standardised per feature


class MCTN(SentimentModel):
    """Cyclic translation source <-> target in a zero-padded shared space (+ a third modality), RNN regressor."""

    name = "mctn"
    Config = MCTNConfig
    aligned = True
    ablatable = ("second_target", "level2_cycle")
    ablations = {"w/o cycle": {"lambda_c": 0.0}, "shared encoder": {"shared_encoder": True}}

    def __init__(self, config: MCTNConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.source, "source", self.name)
        check_modalities(cfg.target, "target", self.name)
        check_modalities(cfg.second_target, "second_target", self.name, allow_empty=True)
        default = TRIMODAL_LAMBDA if cfg.second_target else BIMODAL_LAMBDA
        self.lambda_t = default if cfg.lambda_t is None else cfg.lambda_t
        self.lambda_c = default if cfg.lambda_c is None else cfg.lambda_c
        if self.lambda_t < 0 or self.lambda_c < 0:
            raise ConfigError(f"model.{self.name}.lambda_t and lambda_c must be >= 0")
        if cfg.shared_encoder and not cfg.second_target:
            raise ConfigError(f"model.{self.name}.shared_encoder decodes two targets from one embedding: set "
                              "second_target (e.g. [visual]) or shared_encoder: false")
        widths = {"source": modality_dim(spec, cfg.source, self.name),
                  "target": modality_dim(spec, cfg.target, self.name)}
        if cfg.second_target:
            widths["second"] = modality_dim(spec, cfg.second_target, self.name)
        self.norms = nn.ModuleDict({part: RunningStandardizer(w) for part, w in widths.items()} if cfg.standardize
                                   else {})
        h, layers, drop = cfg.hidden_size, cfg.n_layers, cfg.dropout
        self.space = PaddedSpace(widths if cfg.shared_encoder else {k: widths[k] for k in ("source", "target")})
        self.encoder = SequenceEncoder(self.space.width, h, layers, drop)
        self.decoder = AttentionDecoder(h, self.space.width, layers, drop)
        self.second_decoder: AttentionDecoder | None = None     # shared encoder: the decoder to the third modality
        self.space2: PaddedSpace | None = None                  # hierarchical: [E_{S<->T}; X_T'] of level 2
        self.encoder2: SequenceEncoder | None = None
        self.decoder2: AttentionDecoder | None = None
        if cfg.second_target and cfg.shared_encoder:
            self.second_decoder = AttentionDecoder(h, self.space.width, layers, drop)
        elif cfg.second_target:
            self.space2 = PaddedSpace({"joint": h, "second": widths["second"]})
            self.encoder2 = SequenceEncoder(self.space2.width, h, layers, drop)
            self.decoder2 = AttentionDecoder(h, self.space2.width, layers, drop)
        self.regressor = SentimentRNN(h, cfg.regressor_hidden, spec.n_outputs, drop)

    def _features(self, batch: dict[str, torch.Tensor], part: str, mask: torch.Tensor) -> torch.Tensor:
        """The word-aligned features of a part (source, target, second), standardised with the adapter."""
        modalities = {"source": self.config.source, "target": self.config.target,
                      "second": self.config.second_target}[part]
        x = aligned_input(batch, modalities, self.name)
        return self.norms[part](x, mask) if part in self.norms else x

    def _translate(self, encoder: SequenceEncoder, decoder: AttentionDecoder, states: torch.Tensor,
                   final: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor, source: torch.Tensor,
                   target: torch.Tensor, cycle: bool) -> dict[str, torch.Tensor]:
        """Decode the target from the source's encoding; with `cycle`, encode the translation and decode it back."""
        steps = source.shape[1]
        tf = self.config.teacher_forcing if self.training else 0.0
        out = {"translation": decoder(states, mask, final, steps, target, tf)[0], "translation_target": target}
        if cycle:
            back_states, back_final = encoder(out["translation"], mask)
            out["cycle"] = decoder(back_states, mask, back_final, steps, source, tf)[0]
            out["cycle_target"] = source
        return out

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Encode the source; while training, translate (and cycle) at each level; regress from the last encoder."""
        cfg = self.config
        mask = batch["aligned_mask"].float()
        x_s = self.space.embed("source", self._features(batch, "source", mask))
        states, final = self.encoder(x_s, mask)
        translate = self.training and (self.lambda_t > 0 or self.lambda_c > 0)
        cycle = self.lambda_c > 0
        levels: dict[str, dict[str, torch.Tensor]] = {}
        if translate:
            x_t = self.space.embed("target", self._features(batch, "target", mask))
            levels["1"] = self._translate(self.encoder, self.decoder, states, final, mask, x_s, x_t, cycle)
            if self.second_decoder is not None:
                x_u = self.space.embed("second", self._features(batch, "second", mask))
                levels["2"] = self._translate(self.encoder, self.second_decoder, states, final, mask, x_s, x_u, cycle)
        if self.encoder2 is not None and self.decoder2 is not None and self.space2 is not None:
            joint = self.space2.embed("joint", states)
            states, final2 = self.encoder2(joint, mask)
            if translate:
                x_u = self.space2.embed("second", self._features(batch, "second", mask))
                levels["2"] = self._translate(self.encoder2, self.decoder2, states, final2, mask, joint, x_u,
                                              cycle and cfg.level2_cycle)
        prediction, summary, _ = self.regressor(states, mask)
        return ModelOutput(prediction, {"fused": summary, "encoder_states": states}, {"levels": levels})

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """L_p (task), lambda_t * translation MSE and lambda_c * cycle MSE per level (Eq. 12; "2" = T' terms)."""
        mask = batch["aligned_mask"].float()
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        for level, out in output.extras.get("levels", {}).items():
            suffix = "" if level == "1" else level
            if self.lambda_t > 0:
                terms[f"translation{suffix}"] = self.lambda_t * masked_mse(out["translation"],
                                                                           out["translation_target"], mask)
            if "cycle" in out:
                terms[f"cycle{suffix}"] = self.lambda_c * masked_mse(out["cycle"], out["cycle_target"], mask)
        return terms
