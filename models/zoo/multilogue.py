"""Multilogue-Net (Shenoy & Sardana, 2020) as the multilingual paper uses it (Section 6.1.2), and its cross-lingual
NCE training (Sections 5.1 and 7.1).

Multilogue-Net runs, per modality m, the DialogueRNN recurrences over the steps u_t of a sequence:
    g_t = GRU_G(g_{t-1}, u_t (+) q_{t-1})                       context GRU (global state)
    c_t = sum_{i<t} alpha_i g_i,  alpha = softmax(u_t^T W_alpha [g_1 .. g_{t-1}])   attention over the contexts so far
    q_t = GRU_P(q_{t-1}, u_t (+) c_t)                           state GRU (the speaker's state)
    e_t = GRU_E(e_{t-1}, q_t)                                   emotion GRU
with dropout (0.25) after each cell, and fuses the modalities' emotion states with pairwise bimodal attention
(MMMU-BA, Ghosal et al. 2018): for a pair (X, Y) of (W, d) sequences, N_1 = softmax(X Y^T), N_2 = softmax(Y X^T),
A_1 = (N_1 Y) * X, A_2 = (N_2 X) * Y; the fused sequence [E_t; E_a; E_v; A's of the three pairs] goes through a
dense layer and a linear head.

As Section 6.1.2 uses it: the segments are monologues, so there is one speaker (one state GRU, no listener
update); the steps are words (`aligned = True`: word-level text, audio and visual features averaged over each
word, Section 3's alignment); the segment's sentiment is read from the fused vector at the last word (it has
seen the whole segment through the recurrences); MSE task loss with L2 regularisation, Adam lr 1e-4, weight
decay 1e-4, batch 128 (the recipe `paper:moseas`). Sizes (the paper does not give them; DialogueRNN's):
D_g = D_p = 150, D_e = D_h = 100.

`crosslingual_nce` (Section 5.1, applied to Multilogue-Net in 7.1): the hidden state of the bimodal attention
of a pair, h(T|V) = [A_1; A_2] at the last word, feeds the NCE loss (`models.nn.losses.nce_loss`: exp(x^T y),
unmatched pairs as negatives). With T_2 the translation of the transcript T_1 (batch key
"aligned_text_translation"), L_cross(T|V) = L(T_1|V_1, T_2|V_1), L_cross(T|A) likewise, L_cross(T|V, A) their
sum, and L_inter = L(T, V) between the text and visual emotion states (T: each row's transcript or its
translation, drawn with equal odds while training - the paper's "subsampled multi-lingual texts"). The objective
is MSE + L_cross + L_inter (Section 5.1); translation augmentation ("TransAug") adds the task loss of the
translated transcript with the same audio, visual and label. A translation has no word timings: its t-th word
takes the text channel at step t beside the original's t-th word's audio and visual (the paper does not say how
translated transcripts meet word-aligned features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.losses import nce_loss
from models.nn.masking import last_valid
from models.nn.modalities import available_modalities, check_modalities, modality_dim, present_column, require_keys
from pipeline.config import ConfigBase, ConfigError

TRANSLATION_KEY = "aligned_text_translation"
CROSS_CONDITIONS = {"none": (), "visual": ("visual",), "audio": ("audio",), "both": ("visual", "audio")}


class MonologueRNN(nn.Module):
    """DialogueRNN recurrences for a single party over a step sequence: emotion states (B, W, D_e)."""

    def __init__(self, d_in: int, d_g: int, d_p: int, d_e: int, dropout: float) -> None:
        super().__init__()
        self.global_cell = nn.GRUCell(d_in + d_p, d_g)
        self.party_cell = nn.GRUCell(d_in + d_g, d_p)
        self.emotion_cell = nn.GRUCell(d_p, d_e)
        self.attention = nn.Linear(d_in, d_g, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.sizes = (d_g, d_p, d_e)

    def forward(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run over the W steps; an empty step leaves every state unchanged."""
        b, w, _ = u.shape
        d_g, d_p, d_e = self.sizes
        g = u.new_zeros(b, d_g)
        q = u.new_zeros(b, d_p)
        e = u.new_zeros(b, d_e)
        history: list[torch.Tensor] = []
        emotions = []
        for t in range(w):
            u_t = u[:, t]
            m = mask[:, t].unsqueeze(-1)
            if history:
                hist = torch.stack(history, 1)                                   # (B, t, D_g)
                scores = (self.attention(u_t).unsqueeze(1) * hist).sum(-1)       # (B, t)
                scores = scores.masked_fill(mask[:, :t] <= 0, torch.finfo(scores.dtype).min)
                context = (torch.softmax(scores, -1).unsqueeze(-1) * hist).sum(1)
            else:
                context = u.new_zeros(b, d_g)
            g = m * self.dropout(self.global_cell(torch.cat([u_t, q], -1), g)) + (1 - m) * g
            q = m * self.dropout(self.party_cell(torch.cat([u_t, context], -1), q)) + (1 - m) * q
            e = m * self.dropout(self.emotion_cell(q, e)) + (1 - m) * e
            history.append(g)
            emotions.append(e)
        return torch.stack(emotions, 1)


def pairwise_attention(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MMMU-BA bimodal attention between two (B, W, d) sequences; masked steps get no weight."""
    invalid = (mask <= 0).unsqueeze(1)                                          # (B, 1, W) over keys
    m1 = torch.bmm(x, y.transpose(1, 2)).masked_fill(invalid, torch.finfo(x.dtype).min)
    m2 = torch.bmm(y, x.transpose(1, 2)).masked_fill(invalid, torch.finfo(x.dtype).min)
    a1 = torch.bmm(torch.softmax(m1, -1), y) * x
    a2 = torch.bmm(torch.softmax(m2, -1), x) * y
    return a1, a2


def fit_steps(x: torch.Tensor, mask: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) and (B, T) cut or zero-padded to `steps` steps."""
    if x.shape[1] >= steps:
        return x[:, :steps], mask[:, :steps]
    pad = steps - x.shape[1]
    return nn.functional.pad(x, (0, 0, 0, pad)), nn.functional.pad(mask, (0, pad))


@dataclass
class MultilogueConfig(ConfigBase):
    """Multilogue-Net (monologue, word steps) hyperparameters."""

    modalities_used: list[str] = field(default_factory=lambda: ["text", "audio", "visual"])  # those present
    global_size: int = 150
    party_size: int = 150
    emotion_size: int = 100
    hidden_size: int = 100
    dropout: float = 0.25
    use_pairwise_attention: bool = True


class MultilogueNet(SentimentModel):
    """Per-modality single-party DialogueRNN over words, pairwise bimodal attention fusion, regressor."""

    name = "multilogue"
    Config = MultilogueConfig
    aligned = True
    ablatable = ("use_pairwise_attention",)

    def __init__(self, config: MultilogueConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.modalities_used, "modalities_used", self.name)
        self.used = available_modalities(spec, cfg.modalities_used, self.name)
        self.rnns = nn.ModuleDict({
            m: MonologueRNN(modality_dim(spec, [m], self.name), cfg.global_size, cfg.party_size,
                            cfg.emotion_size, cfg.dropout) for m in self.used})
        self.pairs = list(combinations(self.used, 2)) if cfg.use_pairwise_attention else []
        width = cfg.emotion_size * (len(self.used) + 2 * len(self.pairs))
        self.fuse = nn.Sequential(nn.Linear(width, cfg.hidden_size), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.head = nn.Linear(cfg.hidden_size, spec.n_outputs)

    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each used modality's word sequence and step mask (its own mask where the data has one, times `present`)."""
        require_keys(batch, [*(f"aligned_{m}" for m in self.used), "aligned_mask"], self.name)
        return {m: (batch[f"aligned_{m}"].float(), batch.get(f"aligned_{m}_mask", batch["aligned_mask"]).float()
                    * present_column(batch, m).unsqueeze(-1)) for m in self.used}

    def encode(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> ModelOutput:
        """Recurrences, pairwise attention and the head over the modalities' (x, mask) word sequences."""
        step_mask = (torch.stack([mask for _, mask in inputs.values()], -1).sum(-1) > 0).float()
        steps = int(step_mask.any(0).nonzero().max()) + 1 if bool(step_mask.any()) else 1
        if steps < step_mask.shape[1]:   # padding after every row's last word changes nothing: skip it
            inputs = {m: (x[:, :steps], mask[:, :steps]) for m, (x, mask) in inputs.items()}
            step_mask = step_mask[:, :steps]
        emotions = {m: self.rnns[m](x, mask) for m, (x, mask) in inputs.items()}
        span = self._span(step_mask)
        parts = [emotions[m] for m in self.used]
        reps: dict[str, torch.Tensor] = {}
        for a, b in self.pairs:
            a1, a2 = pairwise_attention(emotions[a], emotions[b], step_mask)
            parts.extend((a1, a2))
            reps[f"{a}|{b}"] = last_valid(torch.cat([a1, a2], -1), span)   # the pair's bimodal-attention state
        fused = last_valid(self.fuse(torch.cat(parts, -1)), span)
        reps.update({m: last_valid(e, span) for m, e in emotions.items()})
        reps["fused"] = fused
        return ModelOutput(self.head(fused), reps)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Run the recurrences over each modality's words, fuse pairwise, predict from the last word."""
        return self.encode(self._inputs(batch))

    @staticmethod
    def _span(step_mask: torch.Tensor) -> torch.Tensor:
        """1 up to each row's last non-empty step (states carry over empty steps)."""
        pos = torch.arange(1, step_mask.shape[1] + 1, device=step_mask.device, dtype=step_mask.dtype)
        last = (step_mask * pos).amax(-1, keepdim=True).clamp(min=1.0)
        return (pos.unsqueeze(0) <= last).to(step_mask.dtype)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """The task loss only (the paper trains with MSE and L2 regularisation = the optimizer's weight decay)."""
        return {"task": self.task_loss(output.prediction, batch["label"])}


@dataclass
class CrossLingualConfig(MultilogueConfig):
    """Multilogue-Net with the multilingual paper's NCE objectives; defaults: its L_cross(T|V) + TransAug row."""

    cross_lingual: str = "visual"        # L_cross conditioned on: visual (T|V) | audio (T|A) | both (their sum) | none
    inter_modal: bool = False            # L_inter = L(T, V)
    translation_augmentation: bool = True   # TransAug: the task loss also on (translation, audio, visual)
    cross_weight: float = 1.0            # the paper sums MSE + L_cross + L_inter unweighted
    inter_weight: float = 1.0
    augmentation_weight: float = 1.0
    nce_reduction: str = "sum"           # the paper's sum over the batch's pairs, or "mean"


class CrossLingualMultilogue(MultilogueNet):
    """Multilogue-Net trained with cross-lingual NCE on its bimodal-attention states and translation augmentation."""

    name = "crosslingual_nce"
    Config = CrossLingualConfig
    ablatable = ("translation_augmentation",)
    ablations = {   # Table 1's rows on Multilogue-Net: the baseline and the three NCE variants
        "Multilogue-net": {"cross_lingual": "none", "inter_modal": False, "translation_augmentation": False},
        "L_cross(T|V)": {"cross_lingual": "visual", "inter_modal": False},
        "L_inter(T,V)": {"cross_lingual": "none", "inter_modal": True},
        "L_cross(T|V), L_cross(T|A)": {"cross_lingual": "both", "inter_modal": False},
    }

    def __init__(self, config: CrossLingualConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        if cfg.cross_lingual not in CROSS_CONDITIONS:
            raise ConfigError(f"model.{self.name}.cross_lingual must be one of {', '.join(CROSS_CONDITIONS)}, "
                              f"got {cfg.cross_lingual!r}")
        if cfg.nce_reduction not in ("sum", "mean"):
            raise ConfigError(f"model.{self.name}.nce_reduction must be sum or mean, got {cfg.nce_reduction!r}")
        self.conditions = CROSS_CONDITIONS[cfg.cross_lingual]
        needs = {"text", *self.conditions, *(("visual",) if cfg.inter_modal else ())}
        lacking = sorted(needs - set(self.used))
        if lacking:
            raise ConfigError(f"model.{self.name}: cross_lingual {cfg.cross_lingual!r} / inter_modal "
                              f"{cfg.inter_modal} need {', '.join(sorted(needs))}, but the model has "
                              f"{', '.join(self.used)} (data and model.{self.name}.modalities_used)")
        if self.conditions and not cfg.use_pairwise_attention:
            raise ConfigError(f"model.{self.name}.cross_lingual {cfg.cross_lingual!r} reads the bimodal-attention "
                              "states: it needs use_pairwise_attention: true")

    @classmethod
    def needs_translations(cls, config: CrossLingualConfig) -> str:
        """cross_lingual (T_2 is the translation) and translation_augmentation train on translations."""
        parts = [f"model.{cls.name}.cross_lingual: {config.cross_lingual}"] if config.cross_lingual != "none" else []
        if config.translation_augmentation:
            parts.append(f"model.{cls.name}.translation_augmentation: true")
        return " and ".join(parts)

    def _uses_translations(self) -> bool:
        return bool(self.conditions) or self.config.translation_augmentation or self.config.inter_modal

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """The original transcript's output; with a translation in the batch, the translated one's in extras."""
        inputs = self._inputs(batch)
        out = self.encode(inputs)
        if TRANSLATION_KEY in batch and self._uses_translations():
            require_keys(batch, [f"{TRANSLATION_KEY}_mask"], self.name)
            x, mask = batch[TRANSLATION_KEY].float(), batch[f"{TRANSLATION_KEY}_mask"].float()
            if x.shape[-1] != inputs["text"][0].shape[-1]:
                raise ConfigError(f"{self.name}: translations are {x.shape[-1]}-d but the text is "
                                  f"{inputs['text'][0].shape[-1]}-d; encode both with one text model "
                                  "(extraction.options.translated_text.model = extraction.options.text.model)")
            x, mask = fit_steps(x, mask, inputs["text"][0].shape[1])
            out.extras["translation"] = self.encode({**inputs, "text": (x, mask)})
            out.extras["has_translation"] = mask.sum(-1) > 0
        return out

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """Task (MSE), translation augmentation, L_cross per condition ("cross_visual", "cross_audio") and L_inter."""
        cfg = self.config
        terms = super().loss_terms(batch, output)
        translated: ModelOutput | None = output.extras.get("translation")
        needed = self.needs_translations(cfg)
        if translated is None and needed and self.training:
            raise ConfigError(f"{self.name}: {needed} train on translated transcripts, but the batch has no "
                              f"{TRANSLATION_KEY!r} (training packs it from cached translations: a text_translation "
                              "column in the labels, or extraction.options.translation.model)")

        def has(m: str) -> torch.Tensor:
            return present_column(batch, m) > 0

        if translated is not None:
            with_tr = output.extras["has_translation"] & has("text")
            if cfg.translation_augmentation and bool(with_tr.any()):
                terms["augmentation"] = cfg.augmentation_weight * self.task_loss(
                    translated.prediction[with_tr], batch["label"][with_tr])
            for m in self.conditions:
                key = f"text|{m}"
                terms[f"cross_{m}"] = cfg.cross_weight * nce_loss(
                    output.representations[key], translated.representations[key], with_tr & has(m), cfg.nce_reduction)
        if cfg.inter_modal:
            text = output.representations["text"]
            if translated is not None and self.training:
                pick = output.extras["has_translation"] & (torch.rand(len(text), device=text.device) < 0.5)
                text = torch.where(pick.unsqueeze(-1), translated.representations["text"], text)
            terms["inter"] = cfg.inter_weight * nce_loss(text, output.representations["visual"],
                                                         has("text") & has("visual"), cfg.nce_reduction)
        return terms
