"""The trainer: a model's training phases, each with its optimizers, schedule and early stopping; AMP on CUDA;
resumable from a checkpoint at any epoch of any phase.

The whole split lives on the device when it fits, so a minibatch is an index tensor and `index_select`.
The trainer only calls the model interface (`forward`, `loss_terms`, `training_phases`, `set_phase`,
`set_epoch`, `predict`): it never special-cases a model. Optimizers and schedules: `models.optimization`.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch

from models.base import OptimStep, SentimentModel
from models.checkpoint import load_training_state, load_weights, save_training_state, save_weights
from models.data import PackedDataset, PackedSplit, fits_on_device
from models.metrics import format_metrics
from models.optimization import (
    TrainConfig,
    build_optimizer,
    build_schedule,
    check_phases,
    monitored_value,
    parameter_names,
    plateau_step,
)
from models.plots import plot_loss_curve
from models.run_dir import CHECKPOINT_DIR, CURVE_FILE, LAST_CHECKPOINT, LOG_FILE, METRICS_FILE, WEIGHTS_FILE
from models.tasks import TaskConfig, task_metrics, task_of_spec
from pipeline.config import ConfigError
from pipeline.files import atomic_write_json


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype to use, or None (always None off CUDA)."""
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "fp16":
        return torch.float16
    if config.amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type="cuda", dtype=dtype) if dtype is not None else nullcontext()


def run_logger(run_dir: Path) -> logging.Logger:
    """A logger writing to run_dir/train.log (and propagating to the root logger)."""
    logger = logging.getLogger(f"sentiflow.train.{run_dir.resolve()}")
    logger.setLevel(logging.INFO)
    target = str((run_dir / LOG_FILE).resolve())
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == target for h in logger.handlers):
        handler = logging.FileHandler(target, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


@torch.no_grad()
def predict_split(model: SentimentModel, split: PackedSplit, device: torch.device, batch_size: int,
                  dtype: torch.dtype | None = None, keep: tuple[str, ...] = (),
                  extras: tuple[str, ...] = (), logits: bool = False) -> dict[str, torch.Tensor]:
    """Predictions (and the named representations in `keep`) for every row of a split, on CPU.

    `extras` names per-row (batch-first) tensors of `ModelOutput.extras` to collect as well: a tensor value
    comes back under its name, a dict of tensors as `name/key` (e.g. "modality_attention/text").
    With `logits`, the raw outputs (B, n_outputs) come back as "logits" (class probabilities are their softmax).
    """
    model.eval()
    preds: list[torch.Tensor] = []
    reps: dict[str, list[torch.Tensor]] = {k: [] for k in keep}
    if logits:
        reps["logits"] = []
    order = torch.arange(len(split), device=device)
    for b in range(0, len(split), batch_size):
        batch = split.batch(order[b: b + batch_size])
        with _autocast(device, dtype):
            out = model(batch)
        preds.append(model.task_kind.activation(out.prediction).float().cpu())
        if logits:
            reps["logits"].append(out.prediction.detach().float().cpu())
        for k in keep:
            if k in out.representations:
                reps[k].append(out.representations[k].float().cpu())
        for k in extras:
            value = out.extras.get(k)
            parts = value.items() if isinstance(value, dict) else [(None, value)]
            for sub, v in parts:
                if isinstance(v, torch.Tensor) and v.dim() >= 1:
                    reps.setdefault(k if sub is None else f"{k}/{sub}", []).append(v.detach().float().cpu())
    result = {"prediction": torch.cat(preds) if preds else torch.zeros(0)}
    result.update({k: torch.cat(v) for k, v in reps.items() if v})
    return result


def split_metrics(model: SentimentModel, pred: torch.Tensor, label: torch.Tensor,
                  task: TaskConfig | None = None) -> dict[str, float]:
    """The task's metrics (`models.tasks.task_metrics`; the model's spec implies the task when none is given)."""
    return task_metrics(task or task_of_spec(model.spec.task, model.spec.n_outputs, model.spec.loss), pred, label)


class Trainer:
    """Trains one model on a packed dataset into a run directory: its phases in order, each with one optimizer per
    update step, its schedule and early stopping, and the phase's best weights restored before the next phase."""

    def __init__(self, model: SentimentModel, dataset: PackedDataset, config: TrainConfig, run_dir: str | Path,
                 device: torch.device, progress: bool = False, gpu_memory_fraction: float = 0.5,
                 task: TaskConfig | None = None) -> None:
        config.validate()
        self.task = task or task_of_spec(model.spec.task, model.spec.n_outputs, model.spec.loss)
        if "train" not in dataset.splits or len(dataset.splits["train"]) == 0:
            raise ConfigError("the labels have no usable 'train' rows")
        if device.type == "cpu" and config.cpu_threads > 0:
            torch.set_num_threads(config.cpu_threads)
        self.model = model.to(device)
        if config.compile:
            self.model.compile()     # in place: state_dict keys and the model's own methods stay as they are
        self.config = config
        self.device = device
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
        self.log = run_logger(self.run_dir)
        self.progress = progress
        self.gpu_memory_fraction = gpu_memory_fraction
        self.splits = {name: self._place(s) for name, s in dataset.splits.items()}
        self.dtype = amp_dtype(config, device)
        self.phases = self.model.training_phases()
        check_phases(self.phases, config, self.model.name)
        self._names = parameter_names(self.model)
        self.steps_per_epoch = max(1, math.ceil(len(self.splits["train"]) / config.batch_size))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.state: dict[str, Any] = {"phase": 0, "epoch": 0, "best": None, "best_epoch": -1, "bad_epochs": 0,
                                      "history": [], "stopped_early": False, "phases": []}
        self._start_phase(0)

    def _place(self, split: PackedSplit) -> PackedSplit:
        if fits_on_device(split, self.device, self.gpu_memory_fraction):
            return split.to(self.device)
        self.log.info("split of %d rows stays on the host (too large for the device); batches are copied", len(split))
        return split

    def _start_phase(self, index: int) -> None:
        """Optimizers and schedules of phase `index` (the model's parameters as they are now)."""
        phase = self.phases[index]
        self.phase = phase
        self.settings = self.config.phase(phase.name, phase.monitor)
        self.optimizers = {st.name: build_optimizer(st, self.config, self.settings.lr, self._names)
                           for st in phase.steps}
        self.schedules = {name: build_schedule(opt, self.config, self.settings, self.steps_per_epoch)
                          for name, opt in self.optimizers.items()}
        self.model.set_phase(phase.name)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of the current phase's first update step (the only one for most models)."""
        return next(iter(self.optimizers.values()))

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        """The schedule of the current phase's first update step."""
        return next(iter(self.schedules.values()))

    # ---- one epoch
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        split = self.splits["train"]
        self.model.train()
        self.model.set_phase(self.phase.name)
        self.model.set_epoch(epoch)
        offset = 100003 * self.state["phase"] + 7919 * self.state["phase"] ** 2
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch + offset)   # same order on resume
        perm = torch.randperm(len(split), generator=gen).to(self.device)
        sums: dict[str, torch.Tensor] = {}     # on the device: no GPU sync per term and step
        count = 0
        for b in range(0, len(split), cfg.batch_size):
            batch = split.batch(perm[b: b + cfg.batch_size])
            n = len(batch["label"])
            for step in self.phase.steps:
                terms, loss = self._update(step, batch, epoch)
                count += n if step is self.phase.steps[-1] else 0
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float() * n / len(self.phase.steps)
                sums["total"] = sums.get("total", 0.0) + loss.detach() * n / len(self.phase.steps)
            self.scaler.update()
        return {k: float(v) / max(1, count) for k, v in sums.items()}

    def _update(self, step: OptimStep, batch: dict[str, torch.Tensor], epoch: int
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One update: forward, the step's loss terms, backward, clip, optimizer and schedule step."""
        with _autocast(self.device, self.dtype):
            out = self.model(batch)
            terms = self.model.loss_terms(batch, out)
        if "task" not in terms:
            raise ConfigError(f"model {self.model.name} returned no 'task' loss term")
        chosen = terms if step.terms is None else {k: terms[k] for k in step.terms if k in terms}
        if not chosen:
            raise ConfigError(f"model {self.model.name}: update {step.name!r} minimises {', '.join(step.terms or [])} "
                              f"but the model returned only {', '.join(terms)}")
        loss = sum(t.float() for t in chosen.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"epoch {epoch}: loss is {loss.item()} "
                                     f"({', '.join(f'{k}={v.item():.4g}' for k, v in terms.items())}); "
                                     "lower train.lr or check the input features")
        optimizer = self.optimizers[step.name]
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(step.parameters, self.config.grad_clip)
        self.scaler.step(optimizer)
        self.schedules[step.name].step()
        return terms, loss

    @torch.no_grad()
    def _eval_loss(self, split: PackedSplit) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        order = torch.arange(len(split), device=self.device)
        for b in range(0, len(split), self.config.eval_batch_size):
            batch = split.batch(order[b: b + self.config.eval_batch_size])
            with _autocast(self.device, self.dtype):
                out = self.model(batch)
                terms = self.model.loss_terms(batch, out)
            n = len(batch["label"])
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            sums["total"] = sums.get("total", 0.0) + float(sum(t.float() for t in terms.values())) * n
        return {k: v / max(1, len(split)) for k, v in sums.items()}

    def evaluate(self, name: str) -> dict[str, float]:
        """Metrics of the current model on one split."""
        split = self.splits[name]
        out = predict_split(self.model, split, self.device, self.config.eval_batch_size, self.dtype)
        return split_metrics(self.model, out["prediction"], split.tensors["label"].cpu(), self.task)

    def _improved(self, value: float) -> bool:
        best = self.state["best"]
        if best is None or math.isnan(best):
            return not math.isnan(value)
        delta = self.config.min_delta
        return value < best - delta if self.settings.mode == "min" else value > best + delta

    def _finish_phase(self) -> None:
        """Record the phase, restore its best weights, and move to the next phase (fresh optimizers)."""
        best = self.run_dir / WEIGHTS_FILE
        self.state["phases"].append({"name": self.phase.name, "epochs": self.state["epoch"],
                                     "best_epoch": self.state["best_epoch"], "best": self.state["best"],
                                     "monitor": self.settings.monitor, "stopped_early": self.state["stopped_early"]})
        if self.state["stopped_early"]:
            self.log.info("phase %s: early stopping after epoch %d (best epoch %d)", self.phase.name,
                          self.state["epoch"], self.state["best_epoch"])
        if self.state["phase"] + 1 < len(self.phases):
            if best.is_file():
                load_weights(self.model, best, self.device)
            self.state.update(phase=self.state["phase"] + 1, epoch=0, best=None, best_epoch=-1, bad_epochs=0,
                              stopped_early=False)
            self._start_phase(self.state["phase"])
            self.log.info("phase %s starts from the best weights of phase %s", self.phase.name,
                          self.phases[self.state["phase"] - 1].name)
        else:
            self.state["done"] = True

    # ---- the loop
    def fit(self, resume: bool = False, max_epochs_this_call: int | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train every phase until its epochs or early stopping; with resume, continue from the last checkpoint."""
        cfg = self.config
        ckpt = self.run_dir / LAST_CHECKPOINT
        if resume and ckpt.with_suffix(".json").is_file():
            self.state = load_training_state(ckpt, self.model, self._resume_phase, self.scaler, self.device)
            self.log.info("resumed phase %s from epoch %d", self.phase.name, self.state["epoch"])
        else:
            torch.manual_seed(cfg.seed)
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(cfg.seed)
        has_valid = "valid" in self.splits and len(self.splits["valid"]) > 0
        monitor_split = "valid" if has_valid else "train"
        if not has_valid:
            self.log.warning("no validation rows: early stopping and model selection use the train split")
        self.log.info("training %s (%d parameters) on %s: %s; phases %s", self.model.name,
                      sum(p.numel() for p in self.model.parameters()), self.device,
                      {k: len(v) for k, v in self.splits.items()}, ", ".join(p.name for p in self.phases))
        done_now = 0
        bar = None
        if self.progress:
            from tqdm import tqdm
            total = sum(cfg.phase(p.name).epochs for p in self.phases)
            done = sum(ph["epochs"] for ph in self.state["phases"]) + self.state["epoch"]
            bar = tqdm(total=total, initial=done, desc="train", unit="epoch")
        while not self.state.get("done"):
            if self.state["epoch"] >= self.settings.epochs or self.state["stopped_early"]:
                self._finish_phase()
                continue
            if max_epochs_this_call is not None and done_now >= max_epochs_this_call:
                break
            record = self._epoch(has_valid)
            watched = record["monitored"]
            self.log.info("%sepoch %d/%d loss %.4f %s %s (%.2f s)",
                          f"{self.phase.name} " if len(self.phases) > 1 else "", record["epoch"],
                          self.settings.epochs, record["train"]["total"], monitor_split,
                          format_metrics(record.get("valid", record.get("train_metrics", {}))), record["seconds"])
            if record["epoch"] % max(1, cfg.checkpoint_every) == 0 or self.state["stopped_early"] \
                    or record["epoch"] == self.settings.epochs:
                save_training_state(ckpt, self.model, self.optimizers, self.schedules, self.scaler, self.state)
            if on_epoch:
                on_epoch(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['train']['total']:.3f}", **{self.settings.monitor: f"{watched:.3f}"})
            done_now += 1
        if bar is not None:
            bar.close()
        return self.state

    def _resume_phase(self, state: dict[str, Any]) -> tuple[dict[str, torch.optim.Optimizer], dict[str, Any]]:
        """For load_training_state: set up the saved phase and hand back its optimizers and schedules to fill."""
        if state["phase"] != self.state["phase"]:
            self.state["phase"] = state["phase"]
            self._start_phase(state["phase"])
        return self.optimizers, self.schedules

    def _epoch(self, has_valid: bool) -> dict[str, Any]:
        """Train one epoch of the current phase, evaluate, keep the best weights; the epoch's history record."""
        epoch = self.state["epoch"]
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        train_terms = self._train_epoch(epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_seconds = time.perf_counter() - t0
        record: dict[str, Any] = {"epoch": epoch + 1, "phase": self.phase.name, "lr": lr,
                                  "train_seconds": train_seconds, "train": train_terms}
        split = "valid" if has_valid else "train"
        record["valid_loss" if has_valid else "train_loss"] = losses = self._eval_loss(self.splits[split])
        record["valid" if has_valid else "train_metrics"] = metrics = self.evaluate(split)
        watched = monitored_value(self.settings.monitor, metrics, losses)
        record["monitored"] = watched
        self.state["epoch"] = epoch + 1
        if self._improved(watched):
            self.state.update(best=watched, best_epoch=epoch + 1, bad_epochs=0)
            save_weights(self.model, self.run_dir / WEIGHTS_FILE)
        else:
            self.state["bad_epochs"] += 1
            if plateau_step(self.schedules, self.config, self.state["bad_epochs"]):
                self.log.info("lr lowered to %.3g after %d epochs without improvement",
                              self.optimizer.param_groups[0]["lr"], self.state["bad_epochs"])
            if self.settings.patience and self.state["bad_epochs"] >= self.settings.patience:
                self.state["stopped_early"] = True
        record["seconds"] = time.perf_counter() - t0
        self.state["history"].append(record)
        return record

    def write_summary(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Reload the best weights, evaluate every split, write metrics.json and the loss curve."""
        best = self.run_dir / WEIGHTS_FILE
        if best.is_file():
            load_weights(self.model, best, self.device)
        phases = self.state["phases"] or [{"name": self.phase.name, "epochs": self.state["epoch"]}]
        summary: dict[str, Any] = {"model": self.model.name, "best_epoch": self.state["best_epoch"],
                                   "epochs_run": sum(p["epochs"] for p in phases),
                                   "stopped_early": self.state["stopped_early"],
                                   "monitor": self.settings.monitor, "device": str(self.device),
                                   "amp": str(self.dtype) if self.dtype else "off",
                                   "parameters": sum(p.numel() for p in self.model.parameters()),
                                   "splits": {k: len(v) for k, v in self.splits.items()}}
        if len(self.phases) > 1:
            summary["phases"] = phases
        secs = [h["train_seconds"] for h in self.state["history"]]
        if secs:
            summary["epoch_seconds_mean"] = sum(secs) / len(secs)
            summary["epoch_seconds_median"] = sorted(secs)[len(secs) // 2]
        summary["metrics"] = {name: self.evaluate(name) for name in self.splits if len(self.splits[name])}
        if extra:
            summary.update(extra)
        summary["history"] = self.state["history"]
        atomic_write_json(self.run_dir / METRICS_FILE, summary, default=float)
        if self.state["history"]:
            plot_loss_curve(self.state["history"], self.run_dir / CURVE_FILE, title=self.model.name)
        for name, m in summary["metrics"].items():
            self.log.info("best model on %s: %s", name, format_metrics(m))
        return summary
