"""FDMER: feature-disentangled multimodal emotion recognition (Yang et al., ACM MM 2022)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import nn
from torch.nn import functional as F

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.layers import CrossAttentionLayer, GeluMLP, GradientReversal, sinusoidal_positions
from models.nn.masking import key_padding_mask, masked_mean, masked_softmax
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES


@dataclass
class FDMERConfig(ConfigBase):
    """FDMER hyperparameters (paper defaults where it gives them, see the model docstring for the rest)."""

    d_k: int = 256                                    # width of encoders and of common/private representations
    encoder_layers: dict[str, int] = field(default_factory=lambda: {"text": 5, "audio": 4, "visual": 4})
    encoder_heads: int = 8
    dropout: float = 0.1
    margin: float = 0.5                               # additive angular margin m
    scale: float = 72.0                               # angular margin logit scale s
    beta: float = 0.1                                 # weight of the discriminator losses (ami + ams)
    gamma: float = 0.1                                # weight of consistency + disparity losses (con + dis)
    grl_lambda: float = 1.0                           # gradient reversal strength for the common part
    fusion_heads: int = 8
    use_consistency: bool = True
    use_disparity: bool = True
    use_discriminator: bool = True
    use_fusion_attention: bool = True                 # phase 1 (cross-modal interaction) of the fusion


def additive_angular_margin_logits(features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                                   margin: float, scale: float) -> torch.Tensor:
    """ArcFace logits s*cos(theta + m) for the target class, s*cos(theta) otherwise (L2-normalised inputs).

    Where theta + m would pass pi the monotonic extension cos(theta) - m*sin(m) is used (Deng et al. 2019).
    Computed in float32 even under autocast (sqrt(1 - cos^2) has an infinite slope at |cos| = 1 in fp16).
    """
    with torch.autocast(features.device.type, enabled=False):
        cos = F.linear(F.normalize(features.float(), dim=-1), F.normalize(weight.float(), dim=-1))
    cos = cos.clamp(-1 + 1e-6, 1 - 1e-6)
    sin = torch.sqrt(1.0 - cos * cos)
    cos_m = cos * math.cos(margin) - sin * math.sin(margin)
    cos_m = torch.where(cos > math.cos(math.pi - margin), cos_m, cos - margin * math.sin(margin))
    onehot = F.one_hot(target, weight.shape[0]).to(torch.bool)
    return scale * torch.where(onehot, cos_m, cos)


def hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased HSIC estimate tr(K H L H)/(n-1)^2 with inner-product kernels K = XX^T, L = YY^T (in float32)."""
    n = x.shape[0]
    if n < 2:
        return x.new_zeros((), dtype=torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        h = torch.eye(n, device=x.device, dtype=x.dtype) - 1.0 / n
        k = x @ x.T
        l = y @ y.T
        return torch.trace(k @ h @ l @ h) / (n - 1) ** 2


class ModalityEncoder(nn.Module):
    """Linear projection to d_k, sinusoidal positions, a transformer encoder, masked mean over time."""

    def __init__(self, in_dim: int, d_k: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, d_k)
        layer = nn.TransformerEncoderLayer(d_k, heads, dim_feedforward=4 * d_k, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_k)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D_in), mask (B, T) 1 = valid -> (B, d_k)."""
        h = self.proj(x) + sinusoidal_positions(x.shape[1], self.proj.out_features, x.device, x.dtype)
        h = self.encoder(h, src_key_padding_mask=key_padding_mask(mask))
        return self.norm(masked_mean(h, mask))


class FDMER(SentimentModel):
    """Disentangled common/private representations with adversarial modality discrimination (Yang et al. 2022).

    Per modality m: a transformer encoder (5/4/4 layers for text/audio/visual) gives an utterance vector u_m;
    a shared common encoder E_c and a private encoder E_p^m (2-layer GELU MLPs, width d_k = 256) give
    c_m = E_c(u_m) and p_m = E_p^m(u_m). Losses:
      - consistency  L_con = mean over modality pairs of ||S_i - S_j||_F^2 / B^2, S_m = norm(c_m) norm(c_m)^T;
      - disparity    L_dis = sum of HSIC(c_m, p_m) and HSIC(p_i, p_j) with inner-product kernels;
      - discriminator D (a cosine classifier over the modalities on L2-normalised features) with the additive
        angular margin loss (m = 0.5, s = 72): L_ams makes private features modality-specific; L_ami is the
        same loss on common features seen through a gradient reversal layer, so D learns to tell modalities
        apart while the common encoder learns to make them indistinguishable (modality-invariant);
      - total = task + beta (ami + ams) + gamma (con + dis).
    Fusion: phase 1 (cross-modal interaction) is multi-head self-attention over the 2M representations
    [c_1..c_M, p_1..p_M]; phase 2 scores each attended representation with a small GELU MLP, softmax-normalises
    the scores into adaptive weights and sums; a GELU MLP head predicts (regression, binary or classes).

    Optimisation is the trainer's (`train:` section); we suggest `train: {lr: 1e-4, batch_size: 32}` for the
    d_k = 256 model (our choice: the paper's exact optimiser settings are not reproduced here).

    Choices where the paper leaves details out: encoder inputs are linearly projected to d_k with sinusoidal
    positions, pre-LN transformer layers with 8 heads, GELU, 4 d_k feed-forward, dropout 0.1, utterance vector
    = masked mean over time; HSIC is computed on L2-normalised features (bounded scale) and B^2 normalises the
    Frobenius consistency term; beta = gamma = 0.1 and the GRL strength 1.0 are our defaults (the paper tunes
    them per dataset); D is shared by common and private features. Missing modalities (`present[:, i] == 0`):
    their representations are excluded from the fusion attention and weights, and from every auxiliary loss
    for that sample. Works with any two or three of text/audio/visual in the spec.
    """

    name = "fdmer"
    Config = FDMERConfig
    modalities = MODALITIES
    aligned = False
    ablatable = ("use_consistency", "use_disparity", "use_discriminator", "use_fusion_attention")

    def __init__(self, config: FDMERConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        self.used = tuple(m for m in MODALITIES if spec.dims.get(m))
        if len(self.used) < 2:
            raise ConfigError(
                f"fdmer needs at least two of text/audio/visual in the data spec (it disentangles modality-common "
                f"from modality-private parts); spec.dims has {sorted(spec.dims)}"
            )
        missing = [m for m in self.used if m not in config.encoder_layers]
        if missing:
            raise ConfigError(f"model.fdmer.encoder_layers lacks entries for {missing}")
        d = config.d_k
        self.encoders = nn.ModuleDict({
            m: ModalityEncoder(spec.dims[m], d, config.encoder_layers[m], config.encoder_heads, config.dropout)
            for m in self.used
        })
        self.common = GeluMLP(d, d, d, config.dropout)
        self.private = nn.ModuleDict({m: GeluMLP(d, d, d, config.dropout) for m in self.used})
        if config.use_discriminator:      # ablated parts are not built, so every parameter that exists learns
            self.discriminator = GeluMLP(d, d, d, config.dropout)
            self.class_weights = nn.Parameter(torch.empty(len(self.used), d))
            nn.init.xavier_uniform_(self.class_weights)
            self.reverse = GradientReversal(config.grl_lambda)
        if config.use_fusion_attention:
            self.fusion_attention = CrossAttentionLayer(d, config.fusion_heads, config.dropout, config.dropout,
                                                        config.dropout, cross=False)
        # softmax over tokens ignores a shared offset, so the scorer's last layer has no (untrainable) bias
        self.fusion_score = nn.Sequential(nn.Linear(d, d // 2), nn.GELU(), nn.Linear(d // 2, 1, bias=False))
        self.head = GeluMLP(d, d, spec.n_outputs, config.dropout)

    def _presence(self, batch: dict[str, torch.Tensor], ref: torch.Tensor) -> torch.Tensor:
        present = batch.get("present")
        cols = []
        for m in self.used:
            p = torch.ones(ref.shape[0], device=ref.device)
            if present is not None:
                p = p * present[:, MODALITIES.index(m)].float()
            cols.append(p)
        return torch.stack(cols, dim=1)   # (B, M)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Encode each modality, disentangle into common/private parts and fuse them."""
        for m in self.used:
            if m not in batch:
                raise KeyError(f"fdmer: batch lacks {m!r} (the spec declared it); keys: {sorted(batch)}")
        ref = batch[self.used[0]]
        present = self._presence(batch, ref)
        common, private = [], []
        for i, m in enumerate(self.used):
            x = batch[m].float()
            if x.dim() != 3 or x.shape[-1] != self.spec.dims[m]:
                raise ValueError(f"fdmer: {m} must be (B, T, {self.spec.dims[m]}), got {tuple(x.shape)}")
            mask = batch.get(f"{m}_mask")
            mask = torch.ones(x.shape[:2], device=x.device) if mask is None else mask.float()
            mask = mask * present[:, i : i + 1]
            u = self.encoders[m](x * mask.unsqueeze(-1), mask)
            common.append(self.common(u))
            private.append(self.private[m](u))
        tokens = torch.stack(common + private, dim=1)                     # (B, 2M, d)
        token_mask = torch.cat([present, present], dim=1)                 # (B, 2M)
        h = tokens
        if self.config.use_fusion_attention:
            h = self.fusion_attention(tokens, None, key_padding_mask=key_padding_mask(token_mask))
        weights = masked_softmax(self.fusion_score(h).squeeze(-1), token_mask, dim=1)
        fused = (weights.unsqueeze(-1) * h).sum(dim=1)
        reps = {f"common_{m}": common[i] for i, m in enumerate(self.used)}
        reps.update({f"private_{m}": private[i] for i, m in enumerate(self.used)})
        reps["fused"] = fused
        parts = [f"common_{m}" for m in self.used] + [f"private_{m}" for m in self.used]
        return ModelOutput(prediction=self.head(fused), representations=reps,
                           extras={"fusion_weights": weights, "present": present,
                                   "modality_attention": {n: weights[:, i].detach() for i, n in enumerate(parts)}})

    def _margin_loss(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        x = torch.cat(feats, dim=0)
        target = torch.arange(len(feats), device=x.device).repeat_interleave(feats[0].shape[0])
        weight = present.T.reshape(-1)
        emb = self.discriminator(F.normalize(x, dim=-1))
        logits = additive_angular_margin_logits(emb, self.class_weights, target, self.config.margin, self.config.scale)
        per = F.cross_entropy(logits, target, reduction="none")
        return (per * weight).sum() / weight.sum().clamp_min(1.0)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """task + beta (ami + ams) + gamma (con + dis), each returned already weighted."""
        cfg = self.config
        reps = output.representations
        present = output.extras["present"]
        common = [reps[f"common_{m}"] for m in self.used]
        private = [reps[f"private_{m}"] for m in self.used]
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        if cfg.use_discriminator:
            terms["ams"] = cfg.beta * self._margin_loss(private, present)
            terms["ami"] = cfg.beta * self._margin_loss([self.reverse(c) for c in common], present)
        if cfg.use_consistency:
            with torch.autocast(present.device.type, enabled=False):
                sims = [F.normalize(c.float(), dim=-1) @ F.normalize(c.float(), dim=-1).T for c in common]
            con = []
            for i, j in combinations(range(len(self.used)), 2):
                both = present[:, i] * present[:, j]
                pair_mask = both.unsqueeze(0) * both.unsqueeze(1)
                con.append((((sims[i] - sims[j]) ** 2) * pair_mask).sum() / pair_mask.sum().clamp_min(1.0))
            terms["con"] = cfg.gamma * torch.stack(con).mean()
        if cfg.use_disparity:
            pairs = [(common[i], private[i], present[:, i]) for i in range(len(self.used))]
            pairs += [(private[i], private[j], present[:, i] * present[:, j])
                      for i, j in combinations(range(len(self.used)), 2)]
            dis = []
            for a, b, both in pairs:
                keep = both > 0
                dis.append(hsic(F.normalize(a[keep], dim=-1), F.normalize(b[keep], dim=-1)))
            terms["dis"] = cfg.gamma * torch.stack(dis).sum()
        return terms
