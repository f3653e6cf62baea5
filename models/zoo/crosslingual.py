"""Cross-lingual multimodal sentiment with NCE training (the multilingual paper's cross-lingual recipe).

Every modality m has an encoder (one-layer bidirectional GRU over its unaligned sequence, masked mean,
linear projection to d): h_t, h_a, h_v. The segment representation is conditioned on the non-verbal
modalities: z(text) = g([h_t; h_a; h_v]) with g a two-layer MLP, and the head predicts from z.
Training on one language uses translations of the transcripts, supplied as data (batch keys
"text_translation" (B, T, D_l) and "text_translation_mask" (B, T), the translated sentence embedded by the
same text extractor; a row with an all-zero mask has no translation):
  task         task loss on z(text)
  augmentation augmentation_weight * task loss on z(translation) (translation augmentation)
  nce          translation_nce_weight * InfoNCE(z(text), z(translation)): the transcript and its translation,
               each conditioned on the same visual/acoustic features, are positives; other segments in the
               batch are negatives
  intermodal   intermodal_nce_weight * InfoNCE(p(h_t), q(mean of h_a, h_v)): a segment's text and its
               non-verbal representation are positives
Few-shot rehearsal (mixing a fraction of the target language into training) and per-language evaluation
live in `models.experiments.rehearsal`.

Chosen here (the paper does not fix them): d = 128, GRU encoders, InfoNCE temperature 0.07 (as in
MoCo/CLIP-style contrastive training), symmetric NCE, loss weights 1.0 / 0.1 / 0.1, dropout 0.2, 128-d
projection heads for the inter-modal NCE. With `modalities_used: [text]` the model runs text-only (the
inter-modal NCE is then unavailable and must have weight 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.losses import info_nce
from models.nn.masking import masked_mean
from models.nn.modalities import available_modalities, check_modalities, modality_dim, require_keys
from models.nn.rnn import run_rnn
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES

TRANSLATION_KEY = "text_translation"
TRANSLATION_MASK_KEY = "text_translation_mask"


class ModalityEncoder(nn.Module):
    """Bidirectional GRU over the valid steps, masked mean, linear projection to `out_dim`."""

    def __init__(self, input_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(input_dim, hidden, 1, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode (B, T, D) -> (B, out_dim)."""
        out, _ = run_rnn(self.rnn, x, mask)
        return self.proj(masked_mean(out, mask))


@dataclass
class CrossLingualConfig(ConfigBase):
    """Cross-lingual NCE model hyperparameters."""

    modalities_used: list[str] = field(default_factory=lambda: ["text", "audio", "visual"])  # those present
    hidden_size: int = 128
    dropout: float = 0.2
    projection_dim: int = 128
    temperature: float = 0.07
    augmentation_weight: float = 1.0
    translation_nce_weight: float = 0.1
    intermodal_nce_weight: float = 0.1


class CrossLingualNCE(SentimentModel):
    """Text encoder conditioned on acoustic/visual features, trained with translation and inter-modal NCE."""

    name = "crosslingual_nce"
    Config = CrossLingualConfig
    aligned = False
    ablatable = ("augmentation_weight", "translation_nce_weight", "intermodal_nce_weight")

    def __init__(self, config: CrossLingualConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        cfg = config
        check_modalities(cfg.modalities_used, "modalities_used", self.name)
        if "text" not in cfg.modalities_used:
            raise ConfigError(f"model.{self.name}.modalities_used must include text (the NCE pairs transcripts)")
        if cfg.temperature <= 0:
            raise ConfigError(f"model.{self.name}.temperature must be > 0, got {cfg.temperature}")
        self.nonverbal = [m for m in available_modalities(spec, cfg.modalities_used, self.name) if m != "text"]
        if cfg.intermodal_nce_weight > 0 and not self.nonverbal:
            raise ConfigError(f"model.{self.name}.intermodal_nce_weight must be 0 without audio or visual features "
                              f"(the dataset has {', '.join(sorted(spec.dims))})")
        h = cfg.hidden_size
        self.encoders = nn.ModuleDict({m: ModalityEncoder(modality_dim(spec, [m], self.name), h, h)
                                       for m in ["text", *self.nonverbal]})
        width = h * (1 + len(self.nonverbal))
        self.fuse = nn.Sequential(nn.Linear(width, h), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(h, h), nn.ReLU())
        self.head = nn.Linear(h, spec.n_outputs)
        self.text_proj: nn.Module | None = None
        self.nonverbal_proj: nn.Module | None = None
        if self.nonverbal:
            self.text_proj = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, cfg.projection_dim))
            self.nonverbal_proj = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, cfg.projection_dim))

    def _fuse(self, h_text: torch.Tensor, h_nonverbal: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.fuse(torch.cat([h_text, *h_nonverbal], -1))
        return z, self.head(z)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Predict from the transcript (and, when the batch has translations, from the translation too)."""
        require_keys(batch, [k for m in ["text", *self.nonverbal] for k in (m, f"{m}_mask")], self.name)
        h_text = self.encoders["text"](batch["text"].float(), batch["text_mask"].float())
        h_nv = [self.encoders[m](batch[m].float(), batch[f"{m}_mask"].float()) for m in self.nonverbal]
        if h_nv and "present" in batch:
            present = batch["present"].float()
            h_nv = [h * present[:, MODALITIES.index(m)].unsqueeze(-1) for m, h in zip(self.nonverbal, h_nv)]
        z, prediction = self._fuse(h_text, h_nv)
        reps = {"fused": z, "text": h_text}
        extras: dict[str, torch.Tensor] = {}
        if h_nv:
            reps["nonverbal"] = torch.stack(h_nv, 0).mean(0)
        if TRANSLATION_KEY in batch:
            require_keys(batch, [TRANSLATION_MASK_KEY], self.name)
            t_mask = batch[TRANSLATION_MASK_KEY].float()
            h_tr = self.encoders["text"](batch[TRANSLATION_KEY].float(), t_mask)
            z_tr, pred_tr = self._fuse(h_tr, h_nv)
            reps["fused_translation"] = z_tr
            extras.update(translation_prediction=pred_tr, has_translation=t_mask.sum(-1) > 0)
        return ModelOutput(prediction, reps, extras)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """Task, translation augmentation, translation NCE and inter-modal NCE terms (weighted)."""
        cfg = self.config
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        needs_translation = cfg.augmentation_weight > 0 or cfg.translation_nce_weight > 0
        if needs_translation and "translation_prediction" not in output.extras and not self.training:
            needs_translation = False   # evaluation batches need no translations
        if needs_translation and "translation_prediction" not in output.extras:
            raise KeyError(f"model {self.name!r}: the batch has no {TRANSLATION_KEY!r}; supply translations as "
                           f"data (a translation column or sidecar file) or set model.{self.name}."
                           f"augmentation_weight and model.{self.name}.translation_nce_weight to 0")
        if needs_translation:
            has = output.extras["has_translation"]
            if cfg.augmentation_weight > 0 and bool(has.any()):
                pred_tr = output.extras["translation_prediction"][has]
                terms["augmentation"] = cfg.augmentation_weight * self.task_loss(pred_tr, batch["label"][has])
            if cfg.translation_nce_weight > 0:
                terms["nce"] = cfg.translation_nce_weight * info_nce(
                    output.representations["fused"], output.representations["fused_translation"],
                    cfg.temperature, valid=has)
        if cfg.intermodal_nce_weight > 0:
            terms["intermodal"] = cfg.intermodal_nce_weight * info_nce(
                self.text_proj(output.representations["text"]),
                self.nonverbal_proj(output.representations["nonverbal"]), cfg.temperature)
        return terms
