"""FDMER: feature-disentangled multimodal emotion recognition (Yang et al., ACM MM 2022), Eqs. 1-18 as published.

Paper: ../shared/papers/fdmer.md. Fidelity table (component, equation, code, faithful or the named deviation):
docs/fidelity/fdmer.md. Word-aligned inputs (the paper's setting: every benchmark gives word-aligned signals).

Per modality m in {t, a, v} (any two or three of them):
  Eq. 1   Z_m = Transformer(X_m), an n_m-layer encoder at the feature width d_m (5/4/4 layers), then a fully
          connected layer to d_k = 256 (the adapter that absorbs any feature width: GloVe 300, BERT 768, COVAREP
          74, Facet 35, or ours: MiniLM 384, acoustic 31, FER 135);
  Eq. 2-3 C_m = I(Z_m) with one common encoder, P_m = S_m(Z_m) with one private encoder per modality (two-layer
          GELU perceptrons, d_k -> d_k -> d_k);
  Eq. 4-5 L_con = 1/3 sum over modality pairs of ||S_m1 - S_m2||_F^2, S_m = C_m^nor C_m^nor^T (B x B);
  Eq. 6-7 L_dis = 1/3 sum over pairs of HSIC(P_m1, P_m2) = (n-1)^-2 Tr(U K_m1 U K_m2), inner-product kernels;
  Eq. 8   D(h) = softmax(W_D^T F(h)), F(h) = W_F h + b_F (d_k -> d = 128), W_D in R^{d x M}, shared by C and P;
  Eq. 9   additive angular margin loss on the L2-normalised F(h) and columns of W_D (tau = 0.5, alpha = 72);
  Eq. 10  L_ami = 1/n sum_i sum_m L_am(C_m, y_m), through a gradient reversal layer (x -1);
  Eq. 11  L_ams = 1/n sum_i sum_m L_am(P_m, y_m);
  Eq. 12-14 CMAF phase 1: C = sum_m C_m, F_so = [C, P_t, P_a, P_v] (4 d_k); for each target F_ta in that list
          G_ta = LN(F_ta) W_G_ta, Q_so = LN(F_so) W_Q_so, U_so = LN(F_so) W_U_so (4 d_k x 4 d_k, read as four
          d_k parts), F_so->ta = softmax(G_ta Q_so^T) U_so, Y_ta = LN(F_ta) + F_so->ta, Y_ta = f(LN(Y_ta)) + Y_ta;
  Eq. 15-17 phase 2: mu_ta = q^T tanh(W_ta Y_ta + b_ta) with one shared q, psi = softmax over the targets,
          Y_fin = sum psi_ta Y_ta, then fully connected layers predict;
  Eq. 18  L_all = L_task + beta (L_ami + L_ams) + gamma (L_con + L_dis), MSE (regression) or CE task loss.

One objective, one optimiser: the paper trains the discriminator and the encoders together, the common path through
gradient reversal (Section 3.3), so the model keeps the default single training step. Where the paper is silent the
choice is named in the fidelity table. A modality absent for a sample (`present[:, i] == 0`) is left out of C, of
the fusion's softmaxes and of every auxiliary loss for that sample. Table 4's rows are `FDMER.ablations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import nn
from torch.nn import functional as F

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.layers import GeluMLP, reverse_gradient, sinusoidal_positions
from models.nn.masking import key_padding_mask, masked_mean, masked_softmax
from models.nn.modalities import present_column, require_keys
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES

DISCRIMINATOR_LOSSES = ("angular_margin", "cross_entropy")
FUSIONS = ("cmaf", "concat", "addition", "multiplication")


@dataclass
class FDMERConfig(ConfigBase):
    """FDMER hyperparameters: the paper's MOSI setting (Section 4.2); choices where it is silent are marked."""

    d_k: int = 256                        # hidden dimension of Z_m, C_m, P_m and the fusion
    d: int = 128                          # output dimension of the discriminator's F (h-hat)
    encoder_layers: dict[str, int] = field(default_factory=lambda: {"text": 5, "audio": 4, "visual": 4})
    encoder_heads: int = 8                # silent: per modality the largest divisor of d_m up to this many heads
    encoder_ffn: int = 4                  # silent: feed-forward width as a multiple of d_m, as in [45]
    fusion_ffn: int = 4                   # silent: width of f_delta (Eq. 14) as a multiple of d_k, as in [45]
    dropout: float = 0.1                  # silent: [45]'s 0.1 in the transformers, the fusion and the head
    margin: float = 0.5                   # tau of Eq. 9
    scale: float = 72.0                   # alpha of Eq. 9
    beta: float = 2e-2                    # weight of L_ami + L_ams (MOSI; MOSEI 3e-2, UR-FUNNY 2e-2)
    gamma: float = 2e-2                   # weight of L_con + L_dis (MOSI; MOSEI 4e-2, UR-FUNNY 3e-2)
    use_adversarial: bool = True          # the modality discriminator and L_ami + L_ams
    use_consistency: bool = True          # L_con
    use_disparity: bool = True            # L_dis
    discriminator_loss: str = "angular_margin"   # angular_margin (Eq. 9) | cross_entropy (Table 4)
    disentangle: bool = True              # False: Z_m go to the fusion directly (Table 4 "non-disentangled")
    fuse_common: bool = True              # C takes part in the fusion (Table 4 "w/o common" sets False)
    fuse_private: bool = True             # the P_m take part in the fusion (Table 4 "w/o private" sets False)
    fusion: str = "cmaf"                  # cmaf | concat (Table 4 "w/o CMAF") | addition | multiplication
    cmaf_phase1: bool = True              # CMAF cross-modal interaction (Eqs. 12-14)
    cmaf_phase2: bool = True              # CMAF adaptive attention (Eqs. 15-17); off: equal weights


def attention_heads(width: int, most: int) -> int:
    """The largest number of heads, at most `most`, that divides `width` (a head needs an integer width)."""
    return max(h for h in range(1, max(1, most) + 1) if width % h == 0)


def additive_angular_margin_logits(features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                                   margin: float, scale: float) -> torch.Tensor:
    """Eq. 9's logits: alpha cos(theta_y + tau) for the target class, alpha cos(theta_m) for the others.

    features (N, d), weight (M, d), both L2-normalised here. Where theta_y + tau would pass pi, ArcFace's reference
    implementation [10] continues with cos(theta) - tau sin(tau) so the logit keeps falling as theta grows;
    elsewhere this is Eq. 9 exactly. Computed in float32 even under autocast (sqrt(1 - cos^2) is steep at +-1).
    """
    with torch.autocast(features.device.type, enabled=False):
        cos = F.linear(F.normalize(features.float(), dim=-1), F.normalize(weight.float(), dim=-1))
    cos = cos.clamp(-1 + 1e-6, 1 - 1e-6)
    sin = torch.sqrt(1.0 - cos * cos)
    cos_m = cos * math.cos(margin) - sin * math.sin(margin)
    cos_m = torch.where(cos > math.cos(math.pi - margin), cos_m, cos - margin * math.sin(margin))
    onehot = F.one_hot(target, weight.shape[0]).to(torch.bool)
    return scale * torch.where(onehot, cos_m, cos)


def hsic(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 6: (n-1)^-2 Tr(U K U L) with inner-product kernels K = XX^T, L = YY^T over the rows where weight is 1.

    weight (N,) in {0, 1} (None: every row) selects the n samples without indexing (no device sync); fewer than
    two samples give 0. Computed in float32.
    """
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        w = torch.ones(x.shape[0], device=x.device) if weight is None else weight.float()
        n = w.sum()
        u = torch.diag(w) - torch.outer(w, w) / n.clamp_min(1.0)   # centring U on the selected rows, 0 elsewhere
        value = torch.trace(u @ (x @ x.T) @ u @ (y @ y.T)) / (n - 1).clamp_min(1.0) ** 2
        return torch.where(n >= 2, value, torch.zeros_like(value))


def consistency_loss(common: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
    """Eqs. 4-5: mean over modality pairs of ||S_m1 - S_m2||_F^2, S_m = C_m^nor C_m^nor^T, over present samples.

    common: M tensors (B, d_k); present (B, M). An entry (i, j) of a pair counts when samples i and j both have
    both modalities (all entries when everything is present, as in the paper). Computed in float32.
    """
    with torch.autocast(present.device.type, enabled=False):
        sims = [F.normalize(c.float(), dim=-1) @ F.normalize(c.float(), dim=-1).T for c in common]
        terms = []
        for i, j in combinations(range(len(common)), 2):
            both = present[:, i].float() * present[:, j].float()
            terms.append((((sims[i] - sims[j]) ** 2) * torch.outer(both, both)).sum())
        return torch.stack(terms).mean()


def disparity_loss(private: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
    """Eq. 7: mean over modality pairs of HSIC(P_m1, P_m2), each over the samples that have both modalities."""
    return torch.stack([hsic(private[i], private[j], present[:, i] * present[:, j])
                        for i, j in combinations(range(len(private)), 2)]).mean()


class ModalityTransformer(nn.Module):
    """Eq. 1 and what follows it: n post-LN transformer encoder layers at the feature width d_m ([45]: sinusoidal
    positions, multi-head self-attention and a feed-forward layer, each with a residual followed by LayerNorm),
    then the masked mean over the words and a fully connected layer to d_k."""

    def __init__(self, width: int, d_k: int, layers: int, most_heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.width = width
        self.dropout = dropout
        layer = nn.TransformerEncoderLayer(width, attention_heads(width, most_heads), dim_feedforward=ffn * width,
                                           dropout=dropout, activation="relu", batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = nn.Linear(width, d_k)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, d_m), mask (B, L) 1 = valid word -> the sequence Z_m (B, L, d_m) and Z_m in R^{d_k} (B, d_k)."""
        h = x + sinusoidal_positions(x.shape[1], self.width, x.device, x.dtype)
        h = self.encoder(F.dropout(h, self.dropout, self.training), src_key_padding_mask=key_padding_mask(mask))
        return h, self.fc(masked_mean(h, mask))


class CrossModalAttentionFusion(nn.Module):
    """CMAF (Section 3.4) over K representations of width d_k: phase 1 (Eqs. 12-14), phase 2 (Eqs. 15-17).

    Weights with a target subscript in the paper (W_G_ta, W_ta, b_ta) exist once per target; the others (the
    LayerNorms, W_Q_so, W_U_so, f_delta, q) are shared. Without phase 1, Y_ta = F_ta; without phase 2, the targets
    are averaged with equal weights. With a single representation (Table 4 "w/o private") both softmaxes are over
    one entry and equal 1 whatever W_G_ta, W_Q_so, W_ta and q are, so those are not built.
    """

    def __init__(self, d_k: int, parts: int, phase1: bool, phase2: bool, ffn: int, dropout: float) -> None:
        super().__init__()
        self.parts, self.d_k, self.dropout = parts, d_k, dropout
        self.phase1, self.phase2 = phase1, phase2 and parts > 1
        if phase1:
            self.norm_target = nn.LayerNorm(d_k)                      # LN(F_ta)
            self.norm_source = nn.LayerNorm(parts * d_k)              # LN(F_so)
            if parts > 1:
                self.target = nn.ModuleList([nn.Linear(d_k, d_k, bias=False) for _ in range(parts)])   # W_G_ta
                self.query = nn.Linear(parts * d_k, parts * d_k, bias=False)                      # W_Q_so
            self.value = nn.Linear(parts * d_k, parts * d_k, bias=False)                          # W_U_so
            self.norm_ffn = nn.LayerNorm(d_k)                         # LN(Y_ta) of Eq. 14
            self.ffn = nn.Sequential(nn.Linear(d_k, ffn * d_k), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(ffn * d_k, d_k))       # f_delta
        if self.phase2:
            self.score = nn.ModuleList([nn.Linear(d_k, d_k) for _ in range(parts)])                # W_ta, b_ta
            self.q = nn.Linear(d_k, 1, bias=False)                    # the shared attention vector q

    def forward(self, parts: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """parts (B, K, d_k), mask (B, K) -> Y_fin (B, d_k), the weights psi (B, K), phase 1's attention (B, K, K)."""
        b = parts.shape[0]
        attention = None
        y = parts
        if self.phase1:
            so = self.norm_source(parts.reshape(b, -1))                                 # LN(F_so), (B, K d_k)
            u_so = self.value(so).view(b, self.parts, self.d_k)                       # U_so
            ta = self.norm_target(parts)                                              # LN(F_ta), (B, K, d_k)
            if self.parts > 1:
                q_so = self.query(so).view(b, self.parts, self.d_k)                   # Q_so as K parts of d_k
                g_ta = torch.stack([w(ta[:, k]) for k, w in enumerate(self.target)], 1)   # G_ta
                attention = masked_softmax(g_ta @ q_so.transpose(1, 2), mask.unsqueeze(1), dim=-1)   # Eq. 12
            else:
                attention = mask.unsqueeze(1).to(ta.dtype)        # a softmax over one source part
            y = ta + F.dropout(attention @ u_so, self.dropout, self.training)          # Eq. 13
            y = F.dropout(self.ffn(self.norm_ffn(y)), self.dropout, self.training) + y   # Eq. 14
        if self.phase2:
            mu = torch.cat([self.q(torch.tanh(w(y[:, k]))) for k, w in enumerate(self.score)], 1)   # Eq. 15
            weights = masked_softmax(mu, mask, dim=1)                                               # Eq. 16
        else:
            weights = masked_softmax(torch.zeros_like(mask, dtype=y.dtype), mask, dim=1)            # equal
        return (weights.unsqueeze(-1) * y).sum(1), weights, attention                              # Eq. 17


class FDMER(SentimentModel):
    """Common and private representations per modality, a modality discriminator with an angular margin, and
    cross-modal attention fusion (Yang et al. 2022; every equation is listed in the module docstring)."""

    name = "fdmer"
    Config = FDMERConfig
    modalities = MODALITIES
    aligned = True
    # Table 4 (the modality rows are `sentiflow ablate --modality-sets TAV,AV,TV,TA`)
    ablations = {
        "w/o L_ami+L_ams": {"use_adversarial": False},
        "w/o L_con": {"use_consistency": False},
        "w/o L_dis": {"use_disparity": False},
        "cross-entropy": {"discriminator_loss": "cross_entropy"},
        "w/o common": {"fuse_common": False},
        "w/o private": {"fuse_private": False},
        "non-disentangled": {"disentangle": False, "use_adversarial": False, "use_consistency": False,
                             "use_disparity": False},
        "w/o CMAF": {"fusion": "concat"},
        "w/o phase 1": {"cmaf_phase1": False},
        "w/o phase 2": {"cmaf_phase2": False},
        "addition": {"fusion": "addition"},
        "multiplication": {"fusion": "multiplication"},
    }

    def __init__(self, config: FDMERConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        self._check(config)
        self.used = tuple(m for m in MODALITIES if spec.dims.get(m))
        if len(self.used) < 2:
            raise ConfigError(
                f"fdmer needs at least two of text/audio/visual in the data spec (it disentangles modality-common "
                f"from modality-private parts); spec.dims has {sorted(spec.dims) or 'nothing'}")
        missing = [m for m in self.used if m not in config.encoder_layers]
        if missing:
            raise ConfigError(f"model.fdmer.encoder_layers lacks entries for {', '.join(missing)}")
        d_k = config.d_k
        self.encoders = nn.ModuleDict({
            m: ModalityTransformer(spec.dims[m], d_k, config.encoder_layers[m], config.encoder_heads,
                                   config.encoder_ffn, config.dropout) for m in self.used})
        if config.disentangle:          # ablated parts are not built, so every parameter that exists learns
            self.common = GeluMLP(d_k, d_k, d_k, config.dropout)                                    # I
            self.private = nn.ModuleDict({m: GeluMLP(d_k, d_k, d_k, config.dropout) for m in self.used})   # S_m
        if config.use_adversarial:
            self.discriminator_fc = nn.Linear(d_k, config.d)                                        # F
            self.discriminator_weight = nn.Parameter(torch.empty(config.d, len(self.used)))         # W_D
            nn.init.xavier_uniform_(self.discriminator_weight)
        self.part_names = self._part_names(config)
        k = len(self.part_names)
        if config.fusion == "cmaf":
            self.fusion = CrossModalAttentionFusion(d_k, k, config.cmaf_phase1, config.cmaf_phase2,
                                                    config.fusion_ffn, config.dropout)
        self.head = GeluMLP(k * d_k if config.fusion == "concat" else d_k, d_k, spec.n_outputs, config.dropout)

    @staticmethod
    def _check(config: FDMERConfig) -> None:
        """Refuse settings that contradict each other, naming the keys."""
        if config.d_k < 1 or config.d < 1 or any(n < 0 for n in config.encoder_layers.values()):
            raise ConfigError("model.fdmer.d_k and model.fdmer.d must be >= 1 and encoder_layers >= 0")
        if config.discriminator_loss not in DISCRIMINATOR_LOSSES:
            raise ConfigError(f"model.fdmer.discriminator_loss must be one of {', '.join(DISCRIMINATOR_LOSSES)}, "
                              f"got {config.discriminator_loss!r}")
        if config.fusion not in FUSIONS:
            raise ConfigError(f"model.fdmer.fusion must be one of {', '.join(FUSIONS)}, got {config.fusion!r}")
        if config.fusion != "cmaf" and not (config.cmaf_phase1 and config.cmaf_phase2):
            raise ConfigError(f"model.fdmer.cmaf_phase1/cmaf_phase2 switch parts of fusion 'cmaf', but fusion is "
                              f"{config.fusion!r}")
        if not config.disentangle:
            on = [k for k in ("use_adversarial", "use_consistency", "use_disparity") if getattr(config, k)]
            if on or not (config.fuse_common and config.fuse_private):
                raise ConfigError("model.fdmer.disentangle=false leaves no common or private representations: set "
                                  "use_adversarial, use_consistency and use_disparity false and leave fuse_common "
                                  f"and fuse_private on (now {', '.join(on) or 'a fuse_* switch is off'})")
        if not (config.fuse_common or config.fuse_private):
            raise ConfigError("model.fdmer.fuse_common and fuse_private are both false: nothing would be fused")

    def _part_names(self, config: FDMERConfig) -> list[str]:
        if not config.disentangle:
            return [f"z_{m}" for m in self.used]
        return (["common"] if config.fuse_common else []) + ([f"private_{m}" for m in self.used]
                                                            if config.fuse_private else [])

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Encode each word-aligned modality, disentangle into common and private parts, fuse and predict."""
        require_keys(batch, [f"aligned_{m}" for m in self.used] + ["aligned_mask"], self.name)
        present = torch.stack([present_column(batch, m) for m in self.used], 1)            # (B, M)
        z = []
        for i, m in enumerate(self.used):
            x = batch[f"aligned_{m}"].float()
            if x.dim() != 3 or x.shape[-1] != self.spec.dims[m]:
                raise ValueError(f"fdmer: aligned_{m} must be (B, T_w, {self.spec.dims[m]}), got {tuple(x.shape)}")
            mask = batch.get(f"aligned_{m}_mask", batch["aligned_mask"]).float() * present[:, i : i + 1]
            z.append(self.encoders[m](x * mask.unsqueeze(-1), mask)[1])
        reps: dict[str, torch.Tensor] = {f"z_{m}": z[i] for i, m in enumerate(self.used)}
        if self.config.disentangle:
            for i, m in enumerate(self.used):
                reps[f"common_{m}"] = self.common(z[i])                                       # Eq. 2
                reps[f"private_{m}"] = self.private[m](z[i])                                  # Eq. 3
            keep = present.unsqueeze(-1)
            reps["common"] = sum(reps[f"common_{m}"] * keep[:, i] for i, m in enumerate(self.used))   # C
        masks = {f"z_{m}": present[:, i] for i, m in enumerate(self.used)}
        masks.update({f"private_{m}": present[:, i] for i, m in enumerate(self.used)})
        masks["common"] = present.amax(1)
        parts = torch.stack([reps[n] for n in self.part_names], 1)                           # (B, K, d_k)
        part_mask = torch.stack([masks[n] for n in self.part_names], 1)                      # (B, K)
        parts = parts * part_mask.unsqueeze(-1)
        extras: dict = {"present": present}
        if self.config.fusion == "cmaf":
            fused, weights, attention = self.fusion(parts, part_mask)
            extras["fusion_weights"] = weights
            extras["modality_attention"] = {n: weights[:, k].detach() for k, n in enumerate(self.part_names)}
            if attention is not None:
                extras["cmaf_attention"] = attention
        elif self.config.fusion == "concat":
            fused = parts.reshape(parts.shape[0], -1)
        elif self.config.fusion == "addition":
            fused = parts.sum(1)
        else:   # element-wise product of the present parts (an absent part counts as 1)
            fused = torch.where(part_mask.unsqueeze(-1) > 0, parts, torch.ones_like(parts)).prod(1)
        reps["fused"] = fused
        if self.config.use_adversarial and not self.training:    # Figure 4(a): D's output per representation
            extras["modality_probabilities"] = {
                n: torch.softmax(self.discriminator_logits(reps[n]), -1).detach()
                for n in [f"common_{m}" for m in self.used] + [f"private_{m}" for m in self.used]}
        return ModelOutput(prediction=self.head(fused), representations=reps, extras=extras)

    def discriminator_logits(self, h: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits (N, M) for representations h (N, d_k): alpha cos(theta) on the normalised F(h) and W_D (with
        the margin on `target` when given, Eq. 9), or W_D^T F(h) with the cross-entropy discriminator (Eq. 8)."""
        hat = self.discriminator_fc(h)
        if self.config.discriminator_loss == "cross_entropy":
            return hat @ self.discriminator_weight
        weight = self.discriminator_weight.T
        if target is None:
            with torch.autocast(hat.device.type, enabled=False):
                cos = F.linear(F.normalize(hat.float(), dim=-1), F.normalize(weight.float(), dim=-1))
            return self.config.scale * cos
        return additive_angular_margin_logits(hat, weight, target, self.config.margin, self.config.scale)

    def adversarial_loss(self, reps: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Eqs. 10-11: 1/n sum over samples and (present) modalities of L_am(h_m, y_m), y_m the modality's index."""
        h = torch.cat(reps, 0)                                                               # (M B, d_k)
        b = reps[0].shape[0]
        target = torch.arange(len(reps), device=h.device).repeat_interleave(b)
        per = F.cross_entropy(self.discriminator_logits(h, target).float(), target, reduction="none")
        return (per * present.T.reshape(-1)).sum() / b

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """Eq. 18's terms, each already weighted: task, beta L_ami, beta L_ams, gamma L_con, gamma L_dis."""
        cfg = self.config
        reps = output.representations
        present = output.extras["present"]
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        if not cfg.disentangle:
            return terms
        common = [reps[f"common_{m}"] for m in self.used]
        private = [reps[f"private_{m}"] for m in self.used]
        if cfg.use_adversarial:
            terms["ami"] = cfg.beta * self.adversarial_loss([reverse_gradient(c) for c in common], present)
            terms["ams"] = cfg.beta * self.adversarial_loss(private, present)
        if cfg.use_consistency:
            terms["con"] = cfg.gamma * consistency_loss(common, present)
        if cfg.use_disparity:
            terms["dis"] = cfg.gamma * disparity_loss(private, present)
        return terms
