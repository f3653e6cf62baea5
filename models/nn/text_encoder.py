"""A fine-tunable BERT-architecture text encoder run from token ids, layer by layer.

The one home for every model that fine-tunes its text encoder (hybrid-modal attention; a fine-tuned text
model and any model's text branch that starts from one): load by name or local directory without network
access (an error that names the model's config setting), run the embeddings and any range of encoder layers
(so a model can change the hidden states between two layers), read chosen hidden states, and switch
gradient checkpointing on to trade compute for memory.

Layer numbering is Hugging Face's `hidden_states`: 0 is the embedding output, k the output of encoder layer k.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from extractors.text.encoder import (  # noqa: F401  the names the zoo uses (zoo modules import only models.nn)
    PACKAGED_MINILM,
    load_offline,
    resolve_text_model,
)
from models.nn.masking import valid_counts
from pipeline.config import ConfigError


def load_pretrained_encoder(name: str, setting: str) -> nn.Module:
    """A BERT-architecture `AutoModel` from local files only, or a ConfigError naming `setting` (the config key)."""
    from transformers import AutoModel

    model = load_offline(name, setting, lambda path: AutoModel.from_pretrained(path, local_files_only=True))
    check_architecture(model, f"{setting} {name!r}")
    return model


def check_architecture(model: nn.Module, what: str) -> None:
    """Refuse a model without BERT's parts (embeddings, encoder.layer) that layer-wise running needs."""
    if not (hasattr(model, "embeddings") and hasattr(getattr(model, "encoder", None), "layer")):
        raise ConfigError(f"{what} is not a BERT-architecture encoder (it needs embeddings and encoder.layer)")


class TextEncoder(nn.Module):
    """A BERT-architecture encoder to fine-tune: embeddings, then encoder layers run in any ranges.

    The pooler is dropped (never used, so it must not linger untrained). `gradient_checkpointing` recomputes
    each layer's activations in the backward pass instead of keeping them (less memory, about a third more
    compute).
    """

    def __init__(self, model: nn.Module, gradient_checkpointing: bool = False) -> None:
        super().__init__()
        check_architecture(model, type(model).__name__)
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        self.model = model
        if gradient_checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()

    @classmethod
    def from_pretrained(cls, name: str, setting: str, gradient_checkpointing: bool = False) -> "TextEncoder":
        """The encoder `name` (the packaged MiniLM's name, a local directory or a locally cached hub name)."""
        return cls(load_pretrained_encoder(name, setting), gradient_checkpointing)

    @classmethod
    def from_config(cls, config: Any, gradient_checkpointing: bool = False) -> "TextEncoder":
        """A randomly initialised encoder of a Hugging Face config's architecture (sizes and parameter counts)."""
        from transformers import AutoModel

        return cls(AutoModel.from_config(config), gradient_checkpointing)

    @property
    def n_layers(self) -> int:
        """Number of encoder layers."""
        return len(self.model.encoder.layer)

    @property
    def hidden_size(self) -> int:
        """Width of every hidden state."""
        return int(self.model.config.hidden_size)

    def check_layer(self, index: int, setting: str) -> int:
        """`index` when it names a hidden state (0 = embeddings .. n_layers), else a ConfigError naming `setting`."""
        if not 0 <= index <= self.n_layers:
            raise ConfigError(f"{setting} must be in [0, {self.n_layers}] (0 = the embedding output, k = after "
                              f"encoder layer k) for this {self.n_layers}-layer encoder, got {index}")
        return index

    def embed(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token, position and segment embeddings (B, T, D): hidden state 0."""
        return self.model.embeddings(input_ids=ids, token_type_ids=token_type_ids)

    def attention_mask(self, hidden: torch.Tensor, mask: torch.Tensor) -> Any:
        """The encoder layers' attention mask for a (B, T) validity mask; a row without tokens attends to all."""
        from transformers.masking_utils import create_bidirectional_mask

        keep = (mask > 0) | (valid_counts(mask) == 0).unsqueeze(1)
        return create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=keep.long())

    def run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, stop: int,
                   attention: Any = None) -> torch.Tensor:
        """Hidden state `start` -> hidden state `stop` through encoder layers start+1 .. stop (B, T, D)."""
        attention = self.attention_mask(hidden, mask) if attention is None else attention
        for layer in self.model.encoder.layer[start:stop]:
            out = layer(hidden, attention)      # positional: gradient checkpointing needs it so
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor, layers: Sequence[int],
                      token_type_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The chosen hidden states (0 = embeddings .. n_layers), running only as deep as the deepest."""
        wanted = sorted({self.check_layer(i, "layers") for i in layers})
        hidden = self.embed(ids, token_type_ids)
        attention = self.attention_mask(hidden, mask)
        found, at = {}, 0
        for index in wanted:
            hidden = self.run_layers(hidden, mask, at, index, attention)
            found[index], at = hidden, index
        return [found[i] for i in layers]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden state (B, T, D)."""
        return self.hidden_states(ids, mask, [self.n_layers], token_type_ids)[0]
