"""VAE-AMDT: VAE-based adversarial multimodal domain transfer with a multi-attention module, as published.

Wang, Wu, Furumai, Wada, Kurihara, "VAE-Based Adversarial Multimodal Domain Transfer for Video-Level
Sentiment Analysis", IEEE Access 2022 (doi 10.1109/ACCESS.2022.3174215). The paper is the spec; equation
and table numbers below are its own. docs/fidelity/vae_amdt.md lists every component against the paper.

Forward pass (m, n range over the modalities the data has; X_m padded steps are masked everywhere):
  Eq. 1      X_(m) = f_m(X_m)                          a linear map to width D (`hidden`; Table 2: 128 MOSI, 64 MOSEI)
  Eq. 2-3    x_(m->m) = f_s( mean_t softmax(X_(m) X_(m)^T) X_(m) )       parameter-free self-attention + 2-layer MLP
  Eq. 4-5    x_(m1->m2) = f_s( mean_t softmax(X_(m1) X_(m2)^T) X_(m2) )  parameter-free cross-attention
  Eq. 6-8    x_m = x_(m->m) || x_(n->m) || ...  grouped by the attended (value) modality, in the paper's order
             (x_v = v->v || l->v || a->v, x_l = l->l || v->l || a->l, x_a = a->a || l->a || v->a): width 3D
  V-B1       one VAE per modality: x_m -> (mu_m, logvar_m) in `latent` dims (Table 2: 32), z_m ~ q(z | x_m),
             decoder([z_m ; one-hot(m)]) -> x_m
  V-A3       triple attention over the stacked means [mu_v, mu_l, mu_a] (B, 3, 32): Eqs. 2-3 again with its own
             f_s, then the linear regressor f_r (Eq. 9)
  V-B2       generators E_v, E_a map mu_v, mu_a into the linguistic space; the discriminator D tells mu_l from them
Losses (Eq. 14, alpha = beta = gamma = 1): "task" alpha L_m (the spec's task loss: MSE in the paper recipes);
  "vae" beta L_vae (Eq. 10, as a loss to minimise: sum over modalities of the batch mean of
  beta_kl KL(q(z|x_m) || N(0, I)) + 0.5 ||decoder(z_m, m) - x_m||^2, the unit-variance Gaussian negative
  log-likelihood without its constant; beta_kl = 0.5); "generator" gamma (L_v^G + L_a^G) (Eq. 11, the
  generators' BCE: D(E_m(mu_m)) labelled real); "discriminator" gamma L^D (Eq. 12 as BCE: mu_l real,
  E_v(mu_v) and E_a(mu_a) fake, on detached inputs). Eq. 13's min-max game is two updates per batch
  (`training_phases`): the discriminator step moves only D on "discriminator"; the model step moves everything
  else on task + vae + generator and never D.

Readings chosen where the text is garbled or silent (each is a row of the fidelity table):
  * Table 2 (garbled by the PDF conversion) is read as: f_m out (B, T, D) with D = 128 / 64; self and cross
    outputs (B, D); the VAE input x_m (B, 3D) = (B, 384) / (B, 192) (the row printed as "Triple Joint");
    triple attention (B, 3, 32) -> (B, 32); AdamW peak lr 1e-4, weight decay 0, beta1 0.9, eps 1e-8,
    CosineAnnealingLR, MSE; batch 4 / 20 and 200 / 80 epochs (two columns, not "420": 1257 / 4 steps x 200
    epochs in 1h13m and 9473 / 20 x 80 in 46m are the same ~14 steps/s on one GTX 1080); parameters 3.3M / 1.7M.
  * Eq. 5 divides by T_(m2), but the sum runs over the rows of alpha X_(m2), one per query step of m1: we take
    the mean over the valid query steps (Eq. 3's form), which differs from the literal text only by the
    constant T_(m1) / T_(m2) when no step is padded, and does not depend on padding.
  * Eq. 2 has no 1/sqrt(D) scale, and none is applied.
  * f_s is "a 2-layer MLP R^D -> R^D" with hidden width D and ReLU; one f_s per attention vector (nine for three
    modalities); the triple attention has its own (R^32 -> R^32). The paper names no activation and no dropout
    (`dropout` defaults to 0 and acts between f_s's layers only when set).
  * The VAEs', generators' and discriminator's layer sizes are not in the paper: one hidden layer of
    `vae_hidden` / `adversary_hidden` = 1024 (ReLU) each. With Table 2's input sizes this gives 3,287,138
    parameters for MOSI (paper: 3.3M) and 1,810,146 for MOSEI (paper: 1.7M; no single set of the unlisted widths
    matches both totals with Table 2's D, see the fidelity table); the tests assert both counts.
  * The one-hot modality code is concatenated to the decoder's input ("concatenate it with the decoder vector").
  * Eq. 11's generator objective is the BCE of D(E_m(mu_m)) against the real label (the paper's "binary
    classification for the generator by using BCELoss"), i.e. the non-saturating form.
  * mu (not the sampled z) carries the prediction and feeds G and D (Sections V-A3 and V-B2); z feeds the
    decoder only; at evaluation nothing is sampled.
Beyond the paper (it drops clips without all three modalities): a modality absent for a clip (present = 0) is
masked out of every attention, contributes zero cross vectors, is a masked row of the triple attention and is
left out of every loss term for that clip. With fewer modalities in the data (Table 8's rows) x_m has width
D x (number of modalities); without text there is no linguistic target and hence no adversarial game.
Ablations (Tables 4 and 7): `use_vae_amdt = False` is "w/o VAE-AMDT" (the triple attention runs over x_v, x_l, x_a
instead of the means); `use_cross_attention = False` leaves x_m = x_(m->m); `use_triple_attention = False` feeds
the concatenation of the stacked vectors to f_r (the paper does not say how its "self-attention" and "(self,
cross)-attention" rows predict; concatenation is the reading chosen). `use_vae = False` keeps a deterministic
encoder to the latent space (no sampling, decoder or L_vae) and `use_adversarial = False` drops G and D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.base import ModelOutput, ModelSpec, OptimStep, SentimentModel, TrainingPhase
from models.nn.masking import masked_mean, masked_softmax
from models.nn.modalities import available_modalities, modality_inputs
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES

# Eqs. 6-8: the attention vectors that make up x_m, by the attended (value) modality: the self vector first,
# then the cross vectors in the paper's order of query modalities.
QUERY_ORDER = {"visual": ("visual", "text", "audio"), "text": ("text", "visual", "audio"),
               "audio": ("audio", "text", "visual")}
TRIPLE_ORDER = ("visual", "text", "audio")   # [mu_v, mu_l, mu_a] as the paper stacks them (V-A3)


@dataclass
class VAEAMDTConfig(ConfigBase):
    """Defaults: the paper's MOSI configuration (Table 2); `VAEAMDTConfig.preset("mosei")` gives the MOSEI one."""

    hidden: int = 128            # D, the width of f_m and f_s (Table 2: 128 MOSI, 64 MOSEI)
    latent: int = 32             # width of the VAE means mu_m (Table 2: triple attention over (B, 3, 32))
    vae_hidden: int = 1024       # hidden width of each VAE's encoder and decoder (paper silent)
    adversary_hidden: int = 1024   # hidden width of the generators and the discriminator (paper silent)
    dropout: float = 0.0         # between f_s's two layers (the paper lists none)
    beta_kl: float = 0.5         # beta of Eq. 10
    alpha: float = 1.0           # Eq. 14: weight of L_m (the task loss)
    beta: float = 1.0            # Eq. 14: weight of L_vae
    gamma: float = 1.0           # Eq. 14: weight of L_at (generators' and discriminator's BCE)
    use_vae_amdt: bool = True    # False: Table 4's "w/o VAE-AMDT" (no VAEs, G or D; triple attention over x_m)
    use_vae: bool = True         # False: a deterministic encoder to the latent space, no decoder or L_vae
    use_adversarial: bool = True   # False: no generators or discriminator
    use_cross_attention: bool = True
    use_triple_attention: bool = True

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "VAEAMDTConfig":
        """The paper's configuration for 'mosi' or 'mosei' (Table 2), with overrides."""
        presets = {"mosi": {}, "mosei": {"hidden": 64}}
        if name not in presets:
            raise ConfigError(f"unknown VAE-AMDT preset {name!r}; known: {', '.join(presets)}")
        return cls.from_dict({**presets[name], **overrides}, where="model.vae_amdt")


def two_layer_mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> ReLU -> (Dropout) -> Linear."""
    layers: list[nn.Module] = [nn.Linear(d_in, d_hidden), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(d_hidden, d_out))


def pooled_attention(query: torch.Tensor, value: torch.Tensor, query_mask: torch.Tensor | None,
                     value_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 2-5 before f_s: mean over the valid query steps of softmax(Q V^T) V, and the weights (B, Tq, Tv).

    Parameter-free and unscaled, as the paper writes it. Padded value steps get zero weight; an empty row
    gives zeros (models.nn.masking's semantics).
    """
    scores = query @ value.transpose(1, 2)
    keys = None if value_mask is None else value_mask.unsqueeze(1).expand_as(scores)
    alpha = masked_softmax(scores, keys)
    return masked_mean(alpha @ value, query_mask), alpha


class LatentEncoder(nn.Module):
    """A VAE of one modality (Section V-B1): x_m -> (mu, logvar); decoder([z ; one-hot(m)]) -> x_m.

    With `variational=False` only the mean layer stays (a deterministic encoder; the `use_vae` ablation).
    """

    def __init__(self, d_in: int, hidden: int, latent: int, variational: bool) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent) if variational else None
        self.dec = two_layer_mlp(latent + len(MODALITIES), hidden, d_in) if variational else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of q(z | x); logvar is None for a deterministic encoder."""
        h = self.enc(x)
        return self.mu(h), None if self.logvar is None else self.logvar(h)

    def decode(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Reconstruct x from z and the modality's one-hot code."""
        return self.dec(torch.cat([z, onehot.expand(z.shape[0], -1)], -1))


class TripleAttention(nn.Module):
    """Section V-A3: Eqs. 2-3 over the stacked unimodal vectors (B, R, d) -> (B, d), with its own f_s."""

    def __init__(self, width: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.f_s = two_layer_mlp(width, width, width, dropout)

    def forward(self, rows: torch.Tensor, row_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The multimodal vector x (B, d) and the attention weights (B, R, R) (absent rows masked)."""
        pooled, alpha = pooled_attention(rows, rows, row_mask, row_mask)
        return self.f_s(pooled), alpha


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of per-clip values over the clips with weight 1 (0 when there are none)."""
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def vae_loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta_kl: float) -> torch.Tensor:
    """Per clip, Eq. 10 as a loss: beta_kl KL(N(mu, exp(logvar)) || N(0, I)) + 0.5 ||recon - x||^2."""
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
    return beta_kl * kl + 0.5 * (recon - x).pow(2).sum(-1)


class VAEAMDT(SentimentModel):
    """Multi-attention module + VAE-AMDT: the triple attention over the VAE means predicts, G and D align them."""

    name = "vae_amdt"
    Config = VAEAMDTConfig
    ablatable = ("use_vae", "use_adversarial", "use_cross_attention", "use_triple_attention")
    # Table 4's row, and Table 7's (all trained without VAE-AMDT; its "(self, cross, triple)-attention" row is
    # Table 4's "w/o VAE-AMDT", the same model with the same figures, so it is not listed twice)
    ablations = {
        "w/o VAE-AMDT": {"use_vae_amdt": False},
        "self-attention": {"use_vae_amdt": False, "use_cross_attention": False, "use_triple_attention": False},
        "(self, cross)-attention": {"use_vae_amdt": False, "use_triple_attention": False},
    }

    def __init__(self, config: VAEAMDTConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        for key in ("hidden", "latent", "vae_hidden", "adversary_hidden"):
            if getattr(config, key) < 1:
                raise ConfigError(f"model.{self.name}.{key} must be >= 1, got {getattr(config, key)}")
        d = config.hidden
        self.used = available_modalities(spec, MODALITIES, self.name)
        self.f_m = nn.ModuleDict({m: nn.Linear(spec.dims[m], d) for m in self.used})              # Eq. 1
        self.parts = {m: [q for q in QUERY_ORDER[m] if q in self.used and (q == m or config.use_cross_attention)]
                      for m in self.used}                                                            # Eqs. 6-8
        self.f_s = nn.ModuleDict({f"{q}_to_{m}": two_layer_mlp(d, d, d, config.dropout)
                                  for m in self.used for q in self.parts[m]})                      # Eqs. 3, 5
        width = d * len(self.parts[self.used[0]])          # x_m: (B, 3D) with three modalities
        self.vae_amdt = config.use_vae_amdt
        self.variational = self.vae_amdt and config.use_vae
        self.encoders = nn.ModuleDict({m: LatentEncoder(width, config.vae_hidden, config.latent, self.variational)
                                       for m in self.used}) if self.vae_amdt else nn.ModuleDict()
        self.sources = [m for m in self.used if m != "text"] \
            if self.vae_amdt and config.use_adversarial and "text" in self.used else []
        z = config.latent
        self.generators = nn.ModuleDict({m: two_layer_mlp(z, config.adversary_hidden, z) for m in self.sources})
        self.discriminator = two_layer_mlp(z, config.adversary_hidden, 1) if self.sources else None
        fused = z if self.vae_amdt else width                                                      # (B, R, fused)
        self.stack = [m for m in TRIPLE_ORDER if m in self.used]
        self.triple = TripleAttention(fused, config.dropout) if config.use_triple_attention else None
        regressor_in = fused if config.use_triple_attention else fused * len(self.stack)
        self.f_r = nn.Linear(regressor_in, spec.n_outputs)                                          # Eq. 9
        for i, m in enumerate(MODALITIES):
            self.register_buffer(f"onehot_{m}", F.one_hot(torch.tensor(i), len(MODALITIES)).float().unsqueeze(0),
                                 persistent=False)

    def attention_vectors(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                            dict[str, torch.Tensor]]:
        """Eqs. 1-8: the unimodal representations x_m (B, width) and each modality's presence (B,)."""
        seqs, masks, present = {}, {}, {}
        for m in self.used:
            x, mask = modality_inputs(batch, m)
            seqs[m], masks[m] = self.f_m[m](x.float()), mask
            present[m] = (mask.sum(1) > 0).to(seqs[m].dtype)
        x_m = {}
        for m in self.used:
            vectors = []
            for q in self.parts[m]:
                pooled, _ = pooled_attention(seqs[q], seqs[m], masks[q], masks[m])
                both = present[q] * present[m]
                vectors.append(self.f_s[f"{q}_to_{m}"](pooled) * both.unsqueeze(1))
            x_m[m] = torch.cat(vectors, -1)
        return x_m, present

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        x_m, present = self.attention_vectors(batch)
        extras: dict[str, Any] = {"present": present, "x": x_m, "mu": {}, "logvar": {}, "z": {}}
        reps: dict[str, torch.Tensor] = {}
        if self.vae_amdt:
            for m in self.used:
                mu, logvar = self.encoders[m].encode(x_m[m])
                extras["mu"][m], extras["logvar"][m] = mu, logvar
                if logvar is not None:
                    extras["z"][m] = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            stacked = {m: extras["mu"][m] for m in self.used}
            for m in self.sources:
                reps[f"{m}_generated"] = self.generators[m](extras["mu"][m])
        else:
            stacked = x_m
        reps.update(stacked)
        rows = torch.stack([stacked[m] for m in self.stack], 1)                     # (B, R, width)
        row_mask = torch.stack([present[m] for m in self.stack], 1)                 # (B, R)
        rows = rows * row_mask.unsqueeze(-1)
        reps["fused"] = rows.flatten(1)          # the concatenated means (the paper's t-SNE input, Fig. 5)
        if self.triple is not None:                                                 # V-A3
            joint, alpha = self.triple(rows, row_mask)
            reps["triple"] = joint
            if getattr(self, "collect_insights", False) and not self.training:    # set by models.insights
                shares = masked_mean(alpha, row_mask)                               # (B, R): mean over the queries
                extras["modality_attention"] = {m: shares[:, i] for i, m in enumerate(self.stack)}
        else:
            joint = reps["fused"]
        return ModelOutput(self.f_r(joint), reps, extras)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        cfg = self.config
        ex = output.extras
        pres = ex["present"]
        terms = {"task": cfg.alpha * self.task_loss(output.prediction, batch["label"])}
        if self.variational:
            parts = [_weighted_mean(vae_loss(ex["x"][m], self.encoders[m].decode(ex["z"][m],
                                                                                 getattr(self, f"onehot_{m}")),
                                             ex["mu"][m], ex["logvar"][m], cfg.beta_kl), pres[m])
                     for m in self.used]
            terms["vae"] = cfg.beta * torch.stack(parts).sum()
        if self.discriminator is not None:
            bce = F.binary_cross_entropy_with_logits

            def judged(x: torch.Tensor, real: bool) -> torch.Tensor:
                logit = self.discriminator(x).squeeze(-1)
                target = torch.ones_like(logit) if real else torch.zeros_like(logit)
                return bce(logit, target, reduction="none")

            fakes = {m: output.representations[f"{m}_generated"] for m in self.sources}
            terms["generator"] = cfg.gamma * sum(_weighted_mean(judged(fakes[m], True), pres[m])
                                                 for m in self.sources)
            disc = _weighted_mean(judged(ex["mu"]["text"].detach(), True), pres["text"])
            for m in self.sources:
                disc = disc + _weighted_mean(judged(fakes[m].detach(), False), pres[m])
            terms["discriminator"] = cfg.gamma * disc
        return terms

    def training_phases(self) -> list[TrainingPhase]:
        """Eq. 13 as two updates per batch: the discriminator's step, then the rest of the model's (never D)."""
        if self.discriminator is None:
            return super().training_phases()
        own = list(self.discriminator.parameters())
        ids = {id(p) for p in own}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [TrainingPhase("main", [OptimStep("discriminator", own, ("discriminator",)),
                                       OptimStep("model", rest, ("task", "vae", "generator"))])]


@dataclass
class VAEAMDTSmallConfig(VAEAMDTConfig):
    """VAE-AMDT's architecture and losses at a quarter of the MOSI width, for a few clips and quick CPU runs."""

    hidden: int = 32
    latent: int = 16
    vae_hidden: int = 128
    adversary_hidden: int = 128


class VAEAMDTSmall(VAEAMDT):
    """VAE-AMDT at D = 32, latent 16, VAE / adversary width 128: the demo's default model (seconds on the samples)."""

    name = "vae_amdt_small"
    Config = VAEAMDTSmallConfig
