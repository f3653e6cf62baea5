"""The one model interface every SentiFlow model implements.

A batch is a dict of tensors (all on one device). Keys a model may read, each present only when the
dataset provides that modality (see `models.data`):
  "text"  (B, T_l, D_l), "text_mask"  (B, T_l)      unaligned token embeddings from the text extractor
  "audio" (B, T_a, D_a), "audio_mask" (B, T_a)      unaligned acoustic sequence (e.g. log-mel 128 x 128)
  "visual"(B, T_v, D_v), "visual_mask"(B, T_v)      unaligned visual sequence (e.g. FER embeddings 64 x D)
  "aligned_text"/"aligned_audio"/"aligned_visual" (B, T_w, D_*), "aligned_mask" (B, T_w)   word-aligned mode
  "text_ids" (B, T_l) long, "text_attention_mask" (B, T_l)   for models that fine-tune the text encoder
  "text_layers" (B, n_layers, T_l, D_l)                      hidden states of chosen encoder layers
  "present" (B, 3) float: 1 where text/audio/visual is present for that sample (0 = masked-out modality)
  "label" (B,) float for regression / binary, (B, n_classes) for multi-label, long (B,) for classification
  "language" (B,) long language index (cross-lingual training), "index" (B,) long row index
  "text_translation" (B, T_l, D_l), "text_translation_mask" (B, T_l)   the transcript in a second language (token
      embeddings of the same text encoder), packed for models whose `needs_translations` names settings; word-aligned
      models get "aligned_text_translation" (B, T_w, D_l) / "aligned_text_translation_mask" (word-level means). A row
      without a translation has an all-zero mask.
The trainer sums `loss_terms` weighted by the model config; it never special-cases a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from models.tasks import DEFAULT_LOSS, TaskKind
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES


@dataclass
class ModelSpec(ConfigBase):
    """What the data looks like: feature dims and lengths per modality, the task and its output size."""

    dims: dict[str, int] = field(default_factory=dict)       # modality -> feature dim ("text", "audio", ...)
    seq_lens: dict[str, int] = field(default_factory=dict)   # modality -> fixed sequence length
    task: str = "regression"
    n_outputs: int = 1
    n_languages: int = 1
    pos_weight: list[float] = field(default_factory=list)    # binary/multilabel BCE weight of positives, per output
    loss: str = DEFAULT_LOSS     # regression task loss (models.tasks.REGRESSION_LOSSES); the default is L1


@dataclass
class ModelOutput:
    """A forward pass: predictions (B, n_outputs) plus named representations for losses and plots."""

    prediction: torch.Tensor
    representations: dict[str, torch.Tensor] = field(default_factory=dict)   # e.g. "fused", "text", ...
    extras: dict[str, Any] = field(default_factory=dict)                     # model-specific values


@dataclass
class OptimStep:
    """One parameter update of a training batch: the parameters it moves and the loss terms it minimises.

    Several steps per batch give alternating updates (a discriminator step, then the generators' step); each
    step has its own optimizer, so a step never moves parameters it does not list.
    """

    name: str
    parameters: list[nn.Parameter]
    terms: tuple[str, ...] | None = None     # None: the sum of every term `loss_terms` returns


@dataclass
class TrainingPhase:
    """A stretch of training with its own updates, optimizers, schedule and stopping (e.g. translation first,
    regression on the frozen encoder after). The trainer restores a phase's best weights before the next."""

    name: str
    steps: list[OptimStep]
    monitor: str = ""    # validation value that selects this phase's best epoch ("" = train.monitor; "loss:<term>")


class SentimentModel(nn.Module, ABC):
    """Base class: subclasses set `name`, `Config`, `modalities`, `aligned` and implement forward/loss_terms."""

    name: ClassVar[str]
    Config: ClassVar[type[ConfigBase]]
    modalities: ClassVar[tuple[str, ...]] = MODALITIES   # the modalities it can use
    aligned: ClassVar[bool] = False          # True: needs word-aligned features ("aligned_*" keys)
    ablatable: ClassVar[tuple[str, ...]] = ()  # components that `config` can switch off for ablations
    ablations: ClassVar[dict[str, dict[str, Any]]] = {}   # the paper's ablation rows: row label -> config overrides
    uses_token_ids: ClassVar[bool] = False   # True: reads "text_ids"/"text_attention_mask"/"text_word_index"

    def __init__(self, config: ConfigBase, spec: ModelSpec) -> None:
        super().__init__()
        self.task_kind = TaskKind.of(spec.task)
        self.config = config
        self.spec = spec
        if spec.pos_weight:
            if spec.task not in ("binary", "multilabel") or len(spec.pos_weight) != spec.n_outputs:
                raise ConfigError(f"spec.pos_weight needs {spec.n_outputs} weight(s) for a binary or multilabel "
                                  f"task, got {spec.pos_weight} for {spec.task}")
            self.register_buffer("bce_pos_weight", torch.tensor(spec.pos_weight, dtype=torch.float32),
                                 persistent=False)
        else:
            self.bce_pos_weight = None

    @abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Predict from a batch dict."""

    @abstractmethod
    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """Named scalar losses, already weighted; their sum is what the trainer minimises ("task" is required)."""

    @classmethod
    def needs_translations(cls, config: ConfigBase) -> str:
        """The settings of `config` that train on translated transcripts, as text for messages ("" when none
        does); training then packs the translation batch keys and refuses to start without translations."""
        return ""

    def set_epoch(self, epoch: int) -> None:
        """Hook for models whose objective changes with training progress (annealing); epochs count per phase."""

    def training_phases(self) -> list[TrainingPhase]:
        """The phases training runs, in order: by default one phase with one step over every trainable parameter."""
        return [TrainingPhase("main", [OptimStep("main", [p for p in self.parameters() if p.requires_grad])])]

    def set_phase(self, name: str) -> None:
        """Hook called as training phase `name` starts (e.g. switch frozen parts to eval mode)."""

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final predictions: scores for regression, probabilities for binary/multi-label, class ids otherwise."""
        return self.task_kind.activation(self.forward(batch).prediction)

    def task_loss(self, prediction: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The task's loss (`TaskKind.loss`: the spec's regression loss, BCE with `spec.pos_weight`, CE)."""
        return self.task_kind.loss(prediction, label, self.bce_pos_weight, self.spec.loss)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
