"""How a model is optimised: the `train:` settings, and the optimizers and learning-rate schedules built from them.

A model declares its training phases and their updates (`SentimentModel.training_phases`: each `OptimStep` names
the parameters it moves and the loss terms it minimises); this module turns the settings into one optimizer per
step with parameter groups (`param_groups`: a regex over parameter names picks a learning rate and weight decay),
a schedule (`cosine` per epoch, `linear` decay per step, `constant`, or `plateau` on the monitored value) after a
linear warm-up over a share of the phase's steps. Recipes (`models/recipes/<model>.yaml`) are these settings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.base import OptimStep, TrainingPhase
from models.tasks import LOSS_MONITOR, is_loss_monitor
from pipeline.config import ConfigBase, ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "linear", "constant", "plateau")


@dataclass
class ParamGroupConfig(ConfigBase):
    """Parameters whose name matches `match` (a regex, searched) get their own learning rate / weight decay."""

    match: str = ""
    lr: float | None = None
    weight_decay: float | None = None


@dataclass
class LayerDecayConfig(ConfigBase):
    """Layer-wise learning-rate decay: the top layer keeps its group's rate, each layer below trains at `factor`
    times the one above it, and the parameters below the first layer (the embeddings) at `factor` times layer 0's."""

    factor: float = 1.0                      # 1: off
    layers: str = r"\.encoder\.layer\.(\d+)\."   # regex over parameter names; its first group is the layer index
    below: str = r"\.embeddings\."            # regex of the parameters under the first layer

    def depth_rates(self, names: list[str]) -> dict[str, float]:
        """Each name's rate multiplier (1 for names neither regex matches)."""
        if self.factor == 1.0:
            return {}
        layer_re, below_re = re.compile(self.layers), re.compile(self.below)
        index = {n: int(m.group(1)) for n in names if (m := layer_re.search(n))}
        if not index:
            return {}
        top = max(index.values())
        rates = {n: self.factor ** (top - i) for n, i in index.items()}
        rates.update({n: self.factor ** (top + 1) for n in names if n not in index and below_re.search(n)})
        return rates


@dataclass
class StepConfig(ConfigBase):
    """Settings of one named optimisation step (e.g. the discriminator's) that differ from the train section."""

    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    betas: tuple[float, float] | None = None


@dataclass
class PhaseConfig(ConfigBase):
    """Settings of one named training phase that differ from the train section."""

    epochs: int | None = None
    lr: float | None = None
    patience: int | None = None
    monitor: str | None = None
    monitor_mode: str | None = None
    warmup: float | None = None


@dataclass
class TrainConfig(ConfigBase):
    """Optimisation settings (YAML section `train:`). Defaults: AdamW, lr 1e-3, cosine annealing, batch 32."""

    epochs: int = 40
    batch_size: int = 32
    eval_batch_size: int = 256
    optimizer: str = "adamw"         # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9            # sgd only
    schedule: str = "cosine"         # cosine (per epoch, to min_lr) | linear (per step, to min_lr) | constant | plateau
    min_lr: float = 0.0
    warmup: float = 0.0              # share of a phase's optimisation steps with a linear warm-up from 0 to lr
    plateau_patience: int = 5        # plateau: epochs without improvement of the monitor before lr *= factor
    plateau_factor: float = 0.1
    param_groups: list[ParamGroupConfig] = field(default_factory=list)
    layer_decay: LayerDecayConfig = field(default_factory=LayerDecayConfig)   # scales the groups' rates by depth
    steps: dict[str, StepConfig] = field(default_factory=dict)      # by OptimStep name
    phases: dict[str, PhaseConfig] = field(default_factory=dict)    # by TrainingPhase name
    grad_clip: float = 1.0           # max gradient norm per step; 0 disables clipping
    patience: int = 10               # epochs without validation improvement before a phase stops; 0 disables
    monitor: str = "mae"             # validation metric, or "loss" / "loss:<term>", that selects the best epoch
    monitor_mode: str = "min"        # "min" or "max" (a loss monitor is always "min")
    min_delta: float = 0.0           # smallest change of the monitored value that counts as improvement
    amp: str = "auto"                # CUDA: auto (bf16 if supported else fp16) | bf16 | fp16 | off; CPU: bf16 only
    seed: int = 1
    seeds: list[int] = field(default_factory=list)   # several: one run per seed, reported as mean ± std
    checkpoint_every: int = 1        # epochs between resumable checkpoints
    cpu_threads: int = 0             # torch intra-op threads when training on CPU; 0 keeps torch's default
    compile: bool = False            # torch.compile the model in place (kernel fusion; pays off on long GPU runs)
    init_from: str = ""              # a run directory whose fine-tuned text encoder starts the model's (--init-from)

    def validate(self) -> None:
        """Raise ConfigError on values the trainer cannot use."""
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("train.epochs, train.batch_size and train.eval_batch_size must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.monitor_mode not in ("min", "max"):
            raise ConfigError(f"train.monitor_mode must be 'min' or 'max', got {self.monitor_mode!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(f"train.amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if self.optimizer not in OPTIMIZERS or any(s.optimizer not in (None, *OPTIMIZERS) for s in self.steps.values()):
            raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for where, w in [("train.warmup", self.warmup)] + [(f"train.phases.{n}.warmup", p.warmup)
                                                           for n, p in self.phases.items() if p.warmup is not None]:
            if not 0.0 <= w < 1.0:
                raise ConfigError(f"{where} is the share of a phase's steps spent warming up: in [0, 1), got {w}")
        for i, g in enumerate(self.param_groups):
            try:
                re.compile(g.match)
            except re.error as exc:
                raise ConfigError(f"train.param_groups[{i}].match {g.match!r} is not a regular expression ({exc})")
        if not 0.0 < self.layer_decay.factor <= 1.0:
            raise ConfigError(f"train.layer_decay.factor must be in (0, 1] (1: off), got {self.layer_decay.factor}")
        for key in ("layers", "below"):
            try:
                pattern = re.compile(getattr(self.layer_decay, key))
            except re.error as exc:
                raise ConfigError(f"train.layer_decay.{key} is not a regular expression ({exc})")
            if key == "layers" and pattern.groups < 1:
                raise ConfigError("train.layer_decay.layers needs a group that captures the layer index, "
                                  r"e.g. '\.encoder\.layer\.(\d+)\.'")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"train.seeds names a seed twice: {self.seeds}")

    def phase(self, name: str, model_monitor: str = "") -> "PhaseSettings":
        """The settings of phase `name`: the train section with that phase's overrides applied. The monitor is
        the phase's own setting, else the one the model declares for the phase, else `train.monitor`."""
        p = self.phases.get(name, PhaseConfig())
        monitor = p.monitor or model_monitor or self.monitor
        mode = "min" if is_loss_monitor(monitor) else (p.monitor_mode or self.monitor_mode)
        return PhaseSettings(epochs=p.epochs or self.epochs, lr=p.lr or self.lr,
                             patience=self.patience if p.patience is None else p.patience, monitor=monitor,
                             mode=mode, warmup=self.warmup if p.warmup is None else p.warmup)


@dataclass
class PhaseSettings:
    """One phase's resolved settings."""

    epochs: int
    lr: float
    patience: int
    monitor: str
    mode: str
    warmup: float


def monitored_value(monitor: str, metrics: dict[str, float], losses: dict[str, float]) -> float:
    """The value `monitor` names: a metric, the summed validation loss ("loss"), or one term ("loss:task")."""
    if monitor == LOSS_MONITOR:
        return losses.get("total", math.nan)
    if is_loss_monitor(monitor):
        return losses.get(monitor.split(":", 1)[1], math.nan)
    return metrics.get(monitor, math.nan)


def check_phases(phases: list[TrainingPhase], config: TrainConfig, model: str) -> None:
    """Refuse settings that name phases or steps the model does not have, or steps without parameters."""
    names = [p.name for p in phases]
    steps = [s.name for p in phases for s in p.steps]
    unknown = [n for n in config.phases if n not in names]
    if unknown:
        raise ConfigError(f"train.phases names {', '.join(unknown)}, but {model} trains in phases "
                          f"{', '.join(names)}")
    unknown = [n for n in config.steps if n not in steps]
    if unknown:
        raise ConfigError(f"train.steps names {', '.join(unknown)}, but {model}'s updates are {', '.join(steps)}")
    for p in phases:
        for s in p.steps:
            if "." in s.name or not s.parameters:
                raise ConfigError(f"{model}: update {s.name!r} of phase {p.name!r} needs a name without '.' and "
                                  "at least one parameter")


def build_optimizer(step: OptimStep, config: TrainConfig, lr: float, named: dict[int, str]) -> torch.optim.Optimizer:
    """The optimizer of one step: its parameters split into `param_groups` (first matching regex wins), each
    group's rate scaled by depth where `layer_decay` is on."""
    sc = config.steps.get(step.name, StepConfig())
    base_lr = sc.lr or lr
    base_wd = config.weight_decay if sc.weight_decay is None else sc.weight_decay
    settings = [("default", base_lr, base_wd)] + [(g.match, g.lr or base_lr, base_wd if g.weight_decay is None else
                                                   g.weight_decay) for g in config.param_groups]
    patterns = [re.compile(g.match) for g in config.param_groups]
    names = [named.get(id(p), "") for p in step.parameters]
    depth = config.layer_decay.depth_rates(names)
    groups: dict[tuple[int, float], dict[str, Any]] = {}
    for p, name in zip(step.parameters, names):
        index = next((i + 1 for i, pat in enumerate(patterns) if pat.search(name)), 0)
        scale = depth.get(name, 1.0)
        if (index, scale) not in groups:
            label, group_lr, wd = settings[index]
            groups[(index, scale)] = {"params": [], "lr": group_lr * scale, "weight_decay": wd,
                                      "name": label if scale == 1.0 else f"{label} x{scale:.4g}"}
        groups[(index, scale)]["params"].append(p)
    groups = [groups[k] for k in sorted(groups)]
    kind = sc.optimizer or config.optimizer
    betas = tuple(sc.betas or config.betas)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=base_lr, momentum=config.momentum)
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(groups, lr=base_lr, betas=betas, eps=config.eps)


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, settings: PhaseSettings,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule: linear warm-up over `warmup` of the phase's steps, then cosine (the epoch's value),
    linear decay to `min_lr`, or constant; `plateau` stays constant here and is lowered by `plateau_step`."""
    total = max(1, settings.epochs * steps_per_epoch)
    warm = int(round(settings.warmup * total))
    floors = [config.min_lr / g["lr"] if g["lr"] > 0 else 0.0 for g in optimizer.param_groups]

    def factor(floor: float):
        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if config.schedule == "cosine":
                progress = min(1.0, (step // steps_per_epoch) / settings.epochs)
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
            if config.schedule == "linear":
                progress = min(1.0, (step - warm) / max(1, total - warm))
                return floor + (1 - floor) * (1 - progress)
            return 1.0
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(fl) for fl in floors])


def plateau_step(schedules: dict[str, torch.optim.lr_scheduler.LambdaLR], config: TrainConfig,
                 bad_epochs: int) -> bool:
    """For the plateau schedule: multiply every learning rate by `plateau_factor` after `plateau_patience`
    epochs without improvement (and at each further multiple); True when it lowered them."""
    if config.schedule != "plateau" or bad_epochs == 0 or bad_epochs % max(1, config.plateau_patience):
        return False
    for schedule in schedules.values():
        schedule.base_lrs = [max(config.min_lr, lr * config.plateau_factor) for lr in schedule.base_lrs]
        for group, lr in zip(schedule.optimizer.param_groups, schedule.base_lrs):
            group["lr"] = lr
    return True


def parameter_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> its qualified name, for matching parameter groups."""
    return {id(p): n for n, p in model.named_parameters()}
