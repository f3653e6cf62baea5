"""A fine-tuned text model: a BERT-architecture encoder trained end to end from the cached token ids, and a head.

The text-only row every seed paper with a strong text result reports is a fine-tuned encoder (hybrid-modal
Table IV, "only T": BERT-base fine-tuned). The recipe (models/recipes/text_finetune.yaml) is data: AdamW with a
small learning rate for the encoder (smaller layer by layer downwards) and a larger one for the head, linear
warm-up then decay, an L1 task loss, the best epoch by validation loss. The fine-tuned encoder's weights are part
of the run's model.safetensors (scoring rebuilds the model and loads them), and `train.init_from` starts another
model's text encoder from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.masking import masked_mean
from models.nn.modalities import present_column, require_keys
from models.nn.text_encoder import PACKAGED_MINILM, TextEncoder
from pipeline.config import ConfigBase, ConfigError

SETTING = "model.text_finetune"
POOLINGS = ("cls", "mean")


@dataclass
class TextFinetuneConfig(ConfigBase):
    """The encoder to fine-tune (the one the cache's token ids come from), its readout and the head."""

    text_model: str = PACKAGED_MINILM    # the text extractor's model (its tokenizer made the cached ids)
    pooling: str = "cls"                 # cls: the first token's state (BERT's); mean: the valid tokens' mean
    dropout: float = 0.1                 # before the regression layer (BERT's hidden dropout)
    gradient_checkpointing: bool = False
    window: int = 0                      # tokens per encoder pass (0: the encoder's positions); longer texts run
    window_overlap: int = 32             # in overlapping windows, averaged where they overlap


class TextFinetune(SentimentModel):
    """Fine-tuned encoder over "text_ids" / "text_attention_mask" -> pooled state -> dropout -> linear head."""

    name = "text_finetune"
    Config = TextFinetuneConfig
    modalities = ("text",)
    uses_token_ids = True

    def __init__(self, config: TextFinetuneConfig, spec: ModelSpec, text_encoder: TextEncoder | None = None) -> None:
        super().__init__(config, spec)
        if config.pooling not in POOLINGS:
            raise ConfigError(f"{SETTING}.pooling must be one of {', '.join(POOLINGS)}, got {config.pooling!r}")
        if not 0.0 <= config.dropout < 1.0:
            raise ConfigError(f"{SETTING}.dropout must be in [0, 1), got {config.dropout}")
        self.text_encoder = text_encoder or TextEncoder.from_pretrained(
            config.text_model, f"{SETTING}.text_model", config.gradient_checkpointing)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.text_encoder.hidden_size, spec.n_outputs)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Predict from token ids (rows without text read zeros)."""
        require_keys(batch, ["text_ids"], self.name)
        features = batch.get("text")
        if features is not None and features.shape[-1] != self.text_encoder.hidden_size:
            raise ConfigError(f"{SETTING}.text_model {self.config.text_model!r} is {self.text_encoder.hidden_size} "
                              f"wide but the cached text features are {features.shape[-1]} wide: set it to the text "
                              "extractor's model (extraction.options.text.model), whose tokenizer made the token ids")
        ids = batch["text_ids"].long()
        mask = batch.get("text_attention_mask")
        mask = torch.ones_like(ids, dtype=torch.float) if mask is None else mask.float()
        n = max(1, int(mask.sum(1).max()))     # the batch's longest text: padding beyond is inert
        ids, mask = ids[:, :n], mask[:, :n]
        states = self.text_encoder.windowed(ids, mask, self.config.window, self.config.window_overlap)
        pooled = states[:, 0] if self.config.pooling == "cls" else masked_mean(states, mask)
        pooled = pooled * present_column(batch, "text").unsqueeze(1).to(pooled.dtype)
        return ModelOutput(self.head(self.dropout(pooled)), {"text": pooled, "fused": pooled})

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """The task loss (the recipe sets MSE)."""
        return {"task": self.task_loss(output.prediction, batch["label"])}
