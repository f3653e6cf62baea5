"""MulT: Multimodal Transformer for unaligned multimodal language sequences (Tsai et al., ACL 2019)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.layers import CrossmodalTransformer
from models.nn.masking import last_valid
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES


@dataclass
class MulTConfig(ConfigBase):
    """MulT hyperparameters; defaults are the authors' released MOSI settings (yaohungt/Multimodal-Transformer)."""

    dim: int = 30                 # d_l = d_a = d_v: width of every crossmodal transformer
    heads: int = 5
    layers: int = 5               # crossmodal blocks per crossmodal transformer
    memory_layers: int = 5        # self-attention layers over the concatenated crossmodal outputs: the released code
                                  # uses max(layers, 3) = 5; a separate key so it can be set independently
    conv_kernel: dict[str, int] = field(default_factory=lambda: {"text": 1, "audio": 1, "visual": 1})
    attn_dropout: dict[str, float] = field(default_factory=lambda: {"text": 0.1, "audio": 0.0, "visual": 0.0})
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    embed_dropout: float = 0.25   # dropout on the raw text embeddings and on transformer inputs
    out_dropout: float = 0.0
    causal_mask: bool = True      # MulT's 'buffered future mask' (--attn_mask, on by default)
    use_text_target: bool = True  # the three target branches (the paper's L/A/V-only ablations switch two off)
    use_audio_target: bool = True
    use_visual_target: bool = True


class MulT(SentimentModel):
    """Crossmodal transformers on unaligned sequences, following Tsai et al. (2019), eqs. (1)-(4).

    Each modality is projected by a 1-D temporal convolution to `dim` channels; for every target modality and
    every other source modality a crossmodal transformer (`layers` blocks of pre-LN crossmodal attention with
    sinusoidal positions) lets the target attend to the source; the target's crossmodal outputs are concatenated
    along features and passed through a self-attention transformer ("memory"), whose last valid time step is the
    target's summary. The summaries are concatenated, go through a residual two-layer ReLU block and a linear head.

    Optimisation (the trainer's `train:` section, not this config): the released MOSI run uses Adam lr 1e-3,
    gradient clipping 0.8, batch 24, 40 epochs with the lr decayed on plateau (`train: {lr: 1e-3, grad_clip: 0.8,
    batch_size: 24, epochs: 40}`).

    Choices where the paper is silent or the released code differs: defaults are the released code's (dim 30,
    5 heads, 5 layers, kernel 1, attention dropout 0.1/0.0/0.0 for text/audio/visual targets, embedding dropout
    0.25, relu and residual dropout 0.1, output dropout 0.0); positions start at 0 rather
    than 1 (the code's padding index offset); padded steps are masked out as attention keys (the code has no
    masks) and the summary is the last *valid* step. Missing modalities: a modality absent for a sample
    (`present[:, i] == 0`) has its inputs zeroed and, where it is the source, its keys are still attended
    uniformly over zeros (not NaN); it can also be left out entirely by the spec, leaving crossmodal pairs among
    the remaining modalities.

    A single modality (the multilingual paper's text-only row, Table 1 "MuT T"): the papers do not say how MulT runs
    on one; here the lone target's crossmodal transformer takes the target itself as its source (CM_{L->L}: the
    same blocks, self-attention), then the memory transformer and head as usual - MulT's structure with one stream.
    """

    name = "mult"
    Config = MulTConfig
    modalities = MODALITIES
    aligned = False
    ablatable = ("use_text_target", "use_audio_target", "use_visual_target")

    def __init__(self, config: MulTConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        self.used = tuple(m for m in MODALITIES if spec.dims.get(m))
        if not self.used:
            raise ConfigError(f"mult needs at least one of text/audio/visual in the data spec; spec.dims has "
                              f"{sorted(spec.dims)}")
        targets = tuple(m for m in self.used if getattr(config, f"use_{m}_target"))
        if not targets:
            raise ConfigError("mult: every target branch is switched off (model.mult.use_*_target)")
        for key in ("conv_kernel", "attn_dropout"):
            missing = [m for m in self.used if m not in getattr(config, key)]
            if missing:
                raise ConfigError(f"model.mult.{key} lacks entries for {missing}")
        self.targets = targets
        d = config.dim
        self.proj = nn.ModuleDict({
            m: nn.Conv1d(spec.dims[m], d, kernel_size=config.conv_kernel[m],
                         padding=(config.conv_kernel[m] - 1) // 2, bias=False)
            for m in self.used
        })
        self.cross = nn.ModuleDict()
        for tgt in targets:
            for src in self.sources(tgt):
                self.cross[f"{tgt}_from_{src}"] = CrossmodalTransformer(
                    d, config.heads, config.layers, attn_dropout=config.attn_dropout[tgt],
                    relu_dropout=config.relu_dropout, res_dropout=config.res_dropout,
                    embed_dropout=config.embed_dropout, causal=config.causal_mask,
                )
        mem_dim = d * len(self.sources(targets[0]))
        self.memory = nn.ModuleDict({
            tgt: CrossmodalTransformer(
                mem_dim, config.heads, config.memory_layers, attn_dropout=config.attn_dropout[tgt],
                relu_dropout=config.relu_dropout, res_dropout=config.res_dropout,
                embed_dropout=config.embed_dropout, causal=config.causal_mask, cross=False,
            )
            for tgt in targets
        })
        combined = mem_dim * len(targets)
        self.proj1 = nn.Linear(combined, combined)
        self.proj2 = nn.Linear(combined, combined)
        self.out = nn.Linear(combined, spec.n_outputs)

    def sources(self, target: str) -> tuple[str, ...]:
        """The modalities `target` attends to: every other one; with a single modality, itself (L -> L)."""
        others = tuple(m for m in self.used if m != target)
        return others or (target,)

    def _inputs(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        seqs: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        present = batch.get("present")
        for i, m in enumerate(MODALITIES):
            if m not in self.used:
                continue
            if m not in batch:
                raise KeyError(f"mult: batch lacks {m!r} (the spec declared it); keys: {sorted(batch)}")
            x = batch[m].float()
            if x.dim() != 3 or x.shape[-1] != self.spec.dims[m]:
                raise ValueError(f"mult: {m} must be (B, T, {self.spec.dims[m]}), got {tuple(x.shape)}")
            mask = batch.get(f"{m}_mask")
            mask = torch.ones(x.shape[:2], device=x.device) if mask is None else mask.float()
            if present is not None:
                mask = mask * present[:, i : i + 1].float()
            x = x * mask.unsqueeze(-1)
            if m == "text":
                x = F.dropout(x, self.config.embed_dropout, self.training)
            seqs[m] = self.proj[m](x.transpose(1, 2)).transpose(1, 2)
            masks[m] = mask
        return seqs, masks

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Predict from unaligned text/audio/visual sequences."""
        seqs, masks = self._inputs(batch)
        summaries = []
        reps: dict[str, torch.Tensor] = {}
        for tgt in self.targets:
            crossed = [self.cross[f"{tgt}_from_{src}"](seqs[tgt], seqs[src], masks[src]) for src in self.sources(tgt)]
            h = self.memory[tgt](torch.cat(crossed, dim=-1), None, masks[tgt])
            summary = last_valid(h, masks[tgt])
            reps[tgt] = summary
            summaries.append(summary)
        fused = torch.cat(summaries, dim=-1)
        h = self.proj2(F.dropout(F.relu(self.proj1(fused)), self.config.out_dropout, self.training))
        h = h + fused
        reps["fused"] = h
        return ModelOutput(prediction=self.out(h), representations=reps)

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """MulT is trained on the task loss alone (`task.loss`; the multilingual paper's recipe: MAE)."""
        return {"task": self.task_loss(output.prediction, batch["label"])}
