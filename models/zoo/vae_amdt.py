"""VAE-AMDT: VAE-based adversarial multimodal domain transfer with a multi-attention module.

Wang, Wu, Furumai, Wada, Kurihara, "VAE-Based Adversarial Multimodal Domain Transfer for Video-Level
Sentiment Analysis", IEEE Access 2022 (doi 10.1109/ACCESS.2022.3174215).

What the paper fixes and this module follows:
  * unaligned inputs V (64 x 8 on MOSI), L (100 x 1024), A (128 x 128: 128 log-mel frames of 128 bins);
  * a multi-attention module of self-attention, cross-attention and triple-attention (eqs. 1-8);
  * three VAEs (one per modality) on the unimodal representations, beta = 0.5 on the KL term, the
    decoder conditioned on the modality's one-hot code;
  * two generators (audio -> text space, visual -> text space) and one discriminator that tells the
    text codes from the transferred ones (adversarial domain transfer into the text space);
  * joint loss  L = L_task + alpha * L_VAE + beta * L_adv + gamma * L_transfer with alpha = beta = gamma = 1;
  * about 3.3M parameters with the MOSI configuration and 1.7M with the MOSEI one (its Table 2).

Reconstructed where the paper is silent (the choices, in equation order):
  (1)  H_m = LayerNorm(X_m W_m + b_m)                 per-modality projection to `hidden`
  (2)  S_m = LayerNorm(H_m + MHA(H_m, H_m, H_m))       self-attention, padded steps masked
  (3)-(6) C_m = LayerNorm(S_m + sum_{n != m} MHA(S_m, S_n, S_n))   cross-attention, one block per ordered pair
  (7)  J = [C_l ; C_a ; C_v] (concatenated over time), R = LayerNorm(J + MHA(J, J, J))  triple-attention
       over time and modality at once
  (8)  r = masked mean of R over the valid steps; u_m = masked mean of C_m (the unimodal representations)
  VAE_m: u_m -> (mu_m, logvar_m) in `latent` dims; decoder([z_m ; onehot(m)]) -> u_m;
         L_VAE = mean over modalities of MSE(recon, u_m) + beta_kl * KL(q(z_m) || N(0, I)).
  Generators G_a, G_v: latent -> hidden -> latent MLPs; the text code z_l is the target space.
  Discriminator D: latent -> hidden/2 -> 1. One optimiser trains everything: the discriminator's
         BCE (z_l real, G(z) fake) is minimised by D, and a gradient-reversal layer in front of D makes
         the generators maximise it (Ganin & Lempitsky's single-objective form of the minimax game).
  L_transfer: MSE between G_m(z_m) and the (detached) text code of the same clip: the paired transfer term
         that gamma weights.
  Fusion: [z_l ; G_a(z_a) ; G_v(z_v) ; r] -> Linear -> GELU -> Dropout -> Linear -> score. At evaluation
         z = mu (no sampling).
  Table 2's hidden/latent sizes are not recoverable from the text available here: `hidden` and `latent`
  below are chosen so that the parameter count with Table 2's input dims matches the paper's totals
  (3.3M MOSI, 1.7M MOSEI; a test checks both within 15%).
A modality absent for a clip (present = 0) has its steps masked, its code zeroed in the fusion and is left
out of the VAE, adversarial and transfer losses for that clip. A modality absent from the whole dataset
drops its branch (text is required: it defines the target space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.masking import key_padding_mask, masked_mean
from models.nn.modalities import modality_inputs
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES


@dataclass
class VAEAMDTConfig(ConfigBase):
    """Defaults: the MOSI configuration; `VAEAMDTConfig.preset("mosei")` gives the MOSEI one."""

    hidden: int = 240            # attention width (MOSI)
    heads: int = 8
    latent: int = 64             # VAE latent / text-space dimension
    dropout: float = 0.1
    beta_kl: float = 0.5         # beta of the beta-VAE objective
    alpha: float = 1.0           # weight of L_VAE
    beta: float = 1.0            # weight of L_adv
    gamma: float = 1.0           # weight of L_transfer
    use_vae: bool = True         # ablation switches
    use_adversarial: bool = True
    use_cross_attention: bool = True
    use_triple_attention: bool = True

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "VAEAMDTConfig":
        """The paper's configuration for 'mosi' or 'mosei', with overrides."""
        presets = {"mosi": {}, "mosei": {"hidden": 168, "heads": 8, "latent": 64}}
        if name not in presets:
            raise ConfigError(f"unknown VAE-AMDT preset {name!r}; known: {', '.join(presets)}")
        return cls.from_dict({**presets[name], **overrides}, where="model.vae_amdt")


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def grad_reverse(x: torch.Tensor) -> torch.Tensor:
    """Identity forward, negated gradient backward."""
    return _GradReverse.apply(x)


FUSED_HEAD_MULTIPLE = 8   # CUDA's fused SDPA kernels need a head dim that is a multiple of 8 (bf16/fp16)


def padded_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor,
                          dropout: float = 0.0, multiple: int = FUSED_HEAD_MULTIPLE) -> torch.Tensor:
    """SDPA with the head dim zero-padded to a multiple of `multiple`: the same result, through a fused kernel.

    Table 2's head dim (30) sends CUDA's SDPA to its math path, which materialises the (B, heads, Tq, Tk) scores
    (the batch-8192 scoring OOM on the H100, benchmarks/reports/pipeline_h100_partial.md). Zero columns add
    nothing to q.k and give zero output columns, which are cut off; the scale stays 1/sqrt(true head dim).
    """
    d = q.shape[-1]
    pad = (-d) % multiple
    if pad == 0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout)
    q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout, scale=d ** -0.5)
    return out[..., :d]


class AttentionBlock(nn.Module):
    """Residual multi-head attention + LayerNorm (query attends to key/value with padding masked)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(hidden)

    def attend(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        """The attention term alone (no residual): nn.MultiheadAttention's maths with its weights, through SDPA.

        nn.MultiheadAttention turns a key-padding mask into the unfused softmax path (it materialises every
        (B, heads, Tq, Tk) score); scaled_dot_product_attention with a boolean mask can use the fused
        memory-efficient kernel on CUDA. Same parameters, same outputs (checked against the module in tests).
        """
        a = self.attn
        b, tq, e = q.shape
        h = a.num_heads
        w_q, w_k, w_v = a.in_proj_weight.chunk(3)
        b_q, b_k, b_v = a.in_proj_bias.chunk(3)
        qh = F.linear(q, w_q, b_q).view(b, tq, h, e // h).transpose(1, 2)
        kh = F.linear(kv, w_k, b_k).view(b, -1, h, e // h).transpose(1, 2)
        vh = F.linear(kv, w_v, b_v).view(b, -1, h, e // h).transpose(1, 2)
        keep = ~key_padding_mask(kv_mask)[:, None, None, :]
        dropout = a.dropout if self.training else 0.0
        if qh.is_cuda:   # pads only a head dim the fused kernels cannot take
            out = padded_head_attention(qh, kh, vh, keep, dropout)
        else:
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=keep, dropout_p=dropout)
        return a.out_proj(out.transpose(1, 2).reshape(b, tq, e))

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        return self.norm(q + self.attend(q, kv, kv_mask))

    def attention_weights(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        """Head-averaged attention probabilities (B, Tq, Tk) of this block (read for plots, never trained on)."""
        _, weights = self.attn(q, kv, kv, key_padding_mask=key_padding_mask(kv_mask), need_weights=True,
                               average_attn_weights=True)
        return weights


class ModalityVAE(nn.Module):
    """Encoder to (mu, logvar) and a decoder conditioned on the modality one-hot."""

    def __init__(self, hidden: int, latent: int, n_modalities: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent + n_modalities, hidden), nn.GELU(), nn.Linear(hidden, hidden))

    def encode(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | u); logvar clamped for numerical safety."""
        h = self.enc(u)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Reconstruct u from z and the modality code."""
        return self.dec(torch.cat([z, onehot.expand(z.shape[0], -1)], -1))


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


class VAEAMDT(SentimentModel):
    """Multi-attention fusion over VAE-regularised, adversarially text-aligned unimodal representations."""

    name = "vae_amdt"
    Config = VAEAMDTConfig
    ablatable = ("use_vae", "use_adversarial", "use_cross_attention", "use_triple_attention")

    def __init__(self, config: VAEAMDTConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        if "text" not in spec.dims:
            raise ConfigError("vae_amdt needs text features (the text space is the transfer target); "
                              "add 'text' to --modalities or use the 'unimodal'/'ef_lstm' models")
        if config.hidden % config.heads:
            raise ConfigError(f"model.vae_amdt.hidden ({config.hidden}) must be divisible by heads ({config.heads})")
        h, z = config.hidden, config.latent
        self.used = [m for m in MODALITIES if m in spec.dims]
        self.others = [m for m in self.used if m != "text"]
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(spec.dims[m], h), nn.LayerNorm(h)) for m in self.used})
        self.self_attn = nn.ModuleDict({m: AttentionBlock(h, config.heads, config.dropout) for m in self.used})
        self.cross_attn = nn.ModuleDict({f"{m}_{n}": AttentionBlock(h, config.heads, config.dropout)
                                         for m in self.used for n in self.used if m != n}) \
            if config.use_cross_attention else nn.ModuleDict()
        self.cross_norm = nn.ModuleDict({m: nn.LayerNorm(h) for m in self.used})
        self.triple = AttentionBlock(h, config.heads, config.dropout) if config.use_triple_attention else None
        self.vae = nn.ModuleDict({m: ModalityVAE(h, z, len(MODALITIES)) for m in self.used})
        self.to_latent = None if config.use_vae else nn.ModuleDict({m: nn.Linear(h, z) for m in self.used})
        self.generators = nn.ModuleDict({m: _mlp(z, h, z) for m in self.others})
        self.discriminator = _mlp(z, max(1, h // 2), 1) if self.others else None
        fused = z * len(self.used) + (h if self.triple is not None else 0)
        self.head = nn.Sequential(nn.Linear(fused, h), nn.GELU(), nn.Dropout(config.dropout),
                                  nn.Linear(h, spec.n_outputs))
        for i, m in enumerate(MODALITIES):
            self.register_buffer(f"onehot_{m}", nn.functional.one_hot(torch.tensor(i), len(MODALITIES))
                                 .float().unsqueeze(0), persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        cfg = self.config
        seqs: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        present: dict[str, torch.Tensor] = {}
        for m in self.used:
            x, mask = modality_inputs(batch, m)
            hm = self.proj[m](x)                                        # (1)
            seqs[m] = self.self_attn[m](hm, hm, mask)                   # (2)
            masks[m] = mask
            present[m] = (mask.sum(1) > 0).to(hm.dtype)
        if cfg.use_cross_attention and len(self.used) > 1:              # (3)-(6)
            crossed = {}
            for m in self.used:
                acc = seqs[m]
                for n in self.used:
                    if n != m:
                        acc = acc + self.cross_attn[f"{m}_{n}"].attend(seqs[m], seqs[n], masks[n]) \
                            * present[n].view(-1, 1, 1)
                crossed[m] = self.cross_norm[m](acc)
            seqs = crossed
        reps: dict[str, torch.Tensor] = {}
        extras: dict[str, Any] = {"present": present, "unimodal": {}, "mu": {}, "logvar": {}, "z": {}}
        for m in self.used:
            u = masked_mean(seqs[m], masks[m])                          # (8), unimodal part
            extras["unimodal"][m] = u
            if cfg.use_vae:
                mu, logvar = self.vae[m].encode(u)
                zm = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
                extras["mu"][m], extras["logvar"][m] = mu, logvar
            else:
                zm = self.to_latent[m](u)
            extras["z"][m] = zm
        codes = [extras["z"]["text"] * present["text"].unsqueeze(1)]
        reps["text"] = extras["z"]["text"]
        for m in self.others:
            g = self.generators[m](extras["z"][m])
            reps[m] = g
            reps[f"{m}_source"] = extras["z"][m]
            codes.append(g * present[m].unsqueeze(1))
        if self.triple is not None:                                     # (7)
            joint = torch.cat([seqs[m] for m in self.used], 1)
            jmask = torch.cat([masks[m] for m in self.used], 1)
            r = masked_mean(self.triple(joint, joint, jmask), jmask)    # (8)
            reps["triple"] = r
            if getattr(self, "collect_insights", False) and not self.training:   # set by models.insights
                extras["modality_attention"] = self._triple_shares(joint, jmask, [seqs[m].shape[1] for m in self.used])
            codes.append(r)
        fused = torch.cat(codes, -1)
        reps["fused"] = fused
        return ModelOutput(self.head(fused), reps, extras)

    @torch.no_grad()
    def _triple_shares(self, joint: torch.Tensor, jmask: torch.Tensor, lengths: list[int]) -> dict[str, torch.Tensor]:
        """Per clip, the triple-attention mass each modality's steps receive, averaged over the valid queries."""
        weights = self.triple.attention_weights(joint, joint, jmask).float()      # (B, Tq, Tk)
        per_key = masked_mean(weights, jmask)                                      # (B, Tk): mean over queries
        return {m: part.sum(-1) for m, part in zip(self.used, per_key.split(lengths, dim=1))}

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        cfg = self.config
        ex = output.extras
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        pres = ex["present"]
        if cfg.use_vae and cfg.alpha > 0:
            parts = []
            for m in self.used:
                u, mu, logvar = ex["unimodal"][m], ex["mu"][m], ex["logvar"][m]
                recon = self.vae[m].decode(ex["z"][m], getattr(self, f"onehot_{m}"))
                rec = ((recon - u) ** 2).mean(1)
                kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
                parts.append(_weighted_mean(rec + cfg.beta_kl * kl, pres[m]))
            terms["vae"] = cfg.alpha * torch.stack(parts).mean()
        if self.others:
            target = ex["z"]["text"].detach()
            if cfg.use_adversarial and cfg.beta > 0 and self.discriminator is not None:
                bce = nn.functional.binary_cross_entropy_with_logits
                real = self.discriminator(target).squeeze(-1)
                adv = _weighted_mean(bce(real, torch.ones_like(real), reduction="none"), pres["text"])
                for m in self.others:
                    fake = self.discriminator(grad_reverse(output.representations[m])).squeeze(-1)
                    w = pres[m] * pres["text"]
                    adv = adv + _weighted_mean(bce(fake, torch.zeros_like(fake), reduction="none"), w) \
                        / len(self.others)
                terms["adversarial"] = cfg.beta * adv
            if cfg.gamma > 0:
                tr = [_weighted_mean(((output.representations[m] - target) ** 2).mean(1), pres[m] * pres["text"])
                      for m in self.others]
                terms["transfer"] = cfg.gamma * torch.stack(tr).mean()
        return terms


@dataclass
class VAEAMDTSmallConfig(VAEAMDTConfig):
    """A compact VAE-AMDT (same architecture and losses, narrower) for small data and quick CPU runs."""

    hidden: int = 64
    heads: int = 4
    latent: int = 32


class VAEAMDTSmall(VAEAMDT):
    """VAE-AMDT at hidden 64 / latent 32: the engine's default model (trains on a few clips in seconds)."""

    name = "vae_amdt_small"
    Config = VAEAMDTSmallConfig
