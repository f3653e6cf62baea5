"""The trainer: AdamW + cosine annealing, AMP on CUDA, early stopping on the validation split, resumable.

The whole split lives on the device when it fits, so a minibatch is an index tensor and `index_select`.
The trainer only calls the model interface (`forward`, `loss_terms`, `set_epoch`, `predict`): it never
special-cases a model.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from models.base import SentimentModel
from models.checkpoint import load_training_state, load_weights, save_training_state, save_weights
from models.data import PackedDataset, PackedSplit, fits_on_device
from models.metrics import format_metrics
from models.plots import plot_loss_curve
from models.run_dir import CHECKPOINT_DIR, CURVE_FILE, LAST_CHECKPOINT, LOG_FILE, METRICS_FILE, WEIGHTS_FILE
from models.tasks import TaskConfig, task_metrics, task_of_spec
from pipeline.config import ConfigBase, ConfigError


@dataclass
class TrainConfig(ConfigBase):
    """Optimisation settings; defaults follow the MSA papers (AdamW, lr 1e-3, cosine annealing, batch 32)."""

    epochs: int = 40
    batch_size: int = 32
    eval_batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    min_lr: float = 0.0              # eta_min of cosine annealing over `epochs`
    grad_clip: float = 1.0           # max gradient norm; 0 disables clipping
    patience: int = 10               # epochs without validation improvement before stopping; 0 disables
    monitor: str = "mae"             # validation metric that selects the best epoch
    monitor_mode: str = "min"        # "min" or "max"
    min_delta: float = 0.0           # smallest change of the monitored metric that counts as improvement
    amp: str = "auto"                # CUDA only: auto (bf16 if supported else fp16) | bf16 | fp16 | off
    seed: int = 1
    checkpoint_every: int = 1        # epochs between resumable checkpoints
    cpu_threads: int = 0             # torch intra-op threads when training on CPU; 0 keeps torch's default
    compile: bool = False            # torch.compile the model in place (kernel fusion; pays off on long GPU runs)

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
    """Trains one model on a packed dataset into a run directory."""

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
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=tuple(config.betas),
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs,
                                                                    eta_min=config.min_lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.state: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": -1, "bad_epochs": 0,
                                      "history": [], "stopped_early": False}

    def _place(self, split: PackedSplit) -> PackedSplit:
        if fits_on_device(split, self.device, self.gpu_memory_fraction):
            return split.to(self.device)
        self.log.info("split of %d rows stays on the host (too large for the device); batches are copied", len(split))
        return split

    # ---- one epoch
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        split = self.splits["train"]
        self.model.train()
        self.model.set_epoch(epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)   # same order on resume
        perm = torch.randperm(len(split), generator=gen).to(self.device)
        sums: dict[str, torch.Tensor] = {}     # on the device: no GPU sync per term and step
        count = 0
        for b in range(0, len(split), cfg.batch_size):
            batch = split.batch(perm[b: b + cfg.batch_size])
            with _autocast(self.device, self.dtype):
                out = self.model(batch)
                terms = self.model.loss_terms(batch, out)
            if "task" not in terms:
                raise ConfigError(f"model {self.model.name} returned no 'task' loss term")
            loss = sum(t.float() for t in terms.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}: loss is {loss.item()} "
                                         f"({', '.join(f'{k}={v.item():.4g}' for k, v in terms.items())}); "
                                         "lower train.lr or check the input features")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = len(batch["label"])
            count += n
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() * n
            sums["total"] = sums.get("total", 0.0) + loss.detach() * n
        return {k: float(v) / max(1, count) for k, v in sums.items()}

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
        return value < best - delta if self.config.monitor_mode == "min" else value > best + delta

    # ---- the loop
    def fit(self, resume: bool = False, max_epochs_this_call: int | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train until `epochs` or early stopping; with resume, continue from the last checkpoint."""
        cfg = self.config
        ckpt = self.run_dir / LAST_CHECKPOINT
        if resume and ckpt.with_suffix(".json").is_file():
            self.state = load_training_state(ckpt, self.model, self.optimizer, self.scheduler, self.scaler,
                                             self.device)
            self.log.info("resumed from epoch %d", self.state["epoch"])
        else:
            torch.manual_seed(cfg.seed)
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(cfg.seed)
        has_valid = "valid" in self.splits and len(self.splits["valid"]) > 0
        monitor_split = "valid" if has_valid else "train"
        if not has_valid:
            self.log.warning("no validation rows: early stopping and model selection use the train split")
        self.log.info("training %s (%d parameters) on %s: %s", self.model.name,
                      sum(p.numel() for p in self.model.parameters()), self.device,
                      {k: len(v) for k, v in self.splits.items()})
        done_now = 0
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=cfg.epochs, initial=self.state["epoch"], desc="train", unit="epoch")
        while self.state["epoch"] < cfg.epochs and not self.state["stopped_early"]:
            if max_epochs_this_call is not None and done_now >= max_epochs_this_call:
                break
            epoch = self.state["epoch"]
            t0 = time.perf_counter()
            train_terms = self._train_epoch(epoch)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            train_seconds = time.perf_counter() - t0
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_seconds": train_seconds,
                                      "train": train_terms}
            if has_valid:
                record["valid_loss"] = self._eval_loss(self.splits["valid"])
                record["valid"] = self.evaluate("valid")
            else:
                record["train_metrics"] = self.evaluate("train")
            watched = (record["valid"] if has_valid else record["train_metrics"]).get(cfg.monitor, float("nan"))
            self.state["epoch"] = epoch + 1
            if self._improved(watched):
                self.state.update(best=watched, best_epoch=epoch + 1, bad_epochs=0)
                save_weights(self.model, self.run_dir / WEIGHTS_FILE)
            else:
                self.state["bad_epochs"] += 1
                if cfg.patience and self.state["bad_epochs"] >= cfg.patience:
                    self.state["stopped_early"] = True
            record["seconds"] = time.perf_counter() - t0
            self.state["history"].append(record)
            self.log.info("epoch %d/%d loss %.4f %s %s (%.2f s)", epoch + 1, cfg.epochs, train_terms["total"],
                          monitor_split, format_metrics(record.get("valid", record.get("train_metrics", {}))),
                          record["seconds"])
            if (epoch + 1) % max(1, cfg.checkpoint_every) == 0 or self.state["stopped_early"] \
                    or epoch + 1 == cfg.epochs:
                save_training_state(ckpt, self.model, self.optimizer, self.scheduler, self.scaler, self.state)
            if on_epoch:
                on_epoch(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{train_terms['total']:.3f}", **{cfg.monitor: f"{watched:.3f}"})
            done_now += 1
        if bar is not None:
            bar.close()
        if self.state["stopped_early"]:
            self.log.info("early stopping after epoch %d (best epoch %d)", self.state["epoch"],
                          self.state["best_epoch"])
        return self.state

    def write_summary(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Reload the best weights, evaluate every split, write metrics.json and the loss curve."""
        best = self.run_dir / WEIGHTS_FILE
        if best.is_file():
            load_weights(self.model, best, self.device)
        summary: dict[str, Any] = {"model": self.model.name, "best_epoch": self.state["best_epoch"],
                                   "epochs_run": self.state["epoch"], "stopped_early": self.state["stopped_early"],
                                   "monitor": self.config.monitor, "device": str(self.device),
                                   "amp": str(self.dtype) if self.dtype else "off",
                                   "parameters": sum(p.numel() for p in self.model.parameters()),
                                   "splits": {k: len(v) for k, v in self.splits.items()}}
        secs = [h["train_seconds"] for h in self.state["history"]]
        if secs:
            summary["epoch_seconds_mean"] = sum(secs) / len(secs)
            summary["epoch_seconds_median"] = sorted(secs)[len(secs) // 2]
        summary["metrics"] = {name: self.evaluate(name) for name in self.splits if len(self.splits[name])}
        if extra:
            summary.update(extra)
        summary["history"] = self.state["history"]
        (self.run_dir / METRICS_FILE).write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
        if self.state["history"]:
            plot_loss_curve(self.state["history"], self.run_dir / CURVE_FILE, title=self.model.name)
        for name, m in summary["metrics"].items():
            self.log.info("best model on %s: %s", name, format_metrics(m))
        return summary
