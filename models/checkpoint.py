"""Checkpoints without pickle: tensors in safetensors, everything else (scalars, config) in JSON.

A training checkpoint flattens the model weights, the optimizer's per-parameter state and the RNG
states into one safetensors file, and the optimizer's param groups, scheduler and scaler state,
epoch counters and history into a JSON file next to it, so resuming continues the same curve.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import uuid
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from pipeline.processes import pid_alive

MODEL_PREFIX = "model."
OPTIM_PREFIX = "optim."
RNG_CPU = "rng.cpu"
RNG_CUDA = "rng.cuda"


LOCK_FILE = ".training.lock"


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete, or does not match the model."""


def versions() -> dict[str, str]:
    """Library versions recorded with every run."""
    import numpy
    import safetensors

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "safetensors": safetensors.__version__}
    try:
        from importlib.metadata import version
        out["sentiflow"] = version("sentiflow")
    except Exception:  # noqa: BLE001 - not installed as a package
        out["sentiflow"] = "unknown"
    return out


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _atomic_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default), encoding="utf-8")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.item() if o.numel() == 1 else o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in a checkpoint's JSON")


def read_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; anything else (a pickle renamed, a torn file) is refused, never executed."""
    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad header
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); SentiFlow loads weights only from "
                              "safetensors and never unpickles checkpoints") from exc


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for one training process; a second training into it is refused while the first runs."""
    lock = Path(run_dir) / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and pid_alive(holder):
                raise CheckpointError(f"run directory {run_dir} is being written by training process {holder}; "
                                      "choose another --out") from None
            lock.unlink(missing_ok=True)   # left by a training that died
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:
        raise CheckpointError(f"cannot lock run directory {run_dir}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Model weights (parameters and buffers) to safetensors."""
    _atomic_save(dict(model.state_dict()), Path(path))


def load_weights(model: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    """Load weights saved by `save_weights`, refusing missing or unexpected keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    state = read_safetensors(path, device)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (per-parameter state) and JSON (groups, scalar state)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIM_PREFIX}{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars, "ids": [str(k) for k in sd["state"]]}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the state_dict that `flatten_optimizer` split."""
    state: dict[int, dict[str, Any]] = {int(pid): {} for pid in info["ids"]}
    for key, value in tensors.items():
        if key.startswith(OPTIM_PREFIX):
            pid, name = key[len(OPTIM_PREFIX):].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    for pid, sc in info["scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    return {"state": state, "param_groups": info["param_groups"]}


def save_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, scaler: Any, state: dict[str, Any]) -> None:
    """Write `<path>.safetensors` (weights, optimizer tensors, RNG) and `<path>.json` (the rest)."""
    path = Path(path)
    opt_tensors, opt_info = flatten_optimizer(optimizer)
    tensors = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    tensors.update(opt_tensors)
    tensors[RNG_CPU] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors[RNG_CUDA] = torch.cuda.get_rng_state()
    info = {"optimizer": opt_info, "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            "state": state, "versions": versions()}
    _atomic_save(tensors, path.with_suffix(".safetensors"))
    _atomic_json(info, path.with_suffix(".json"))   # written last: its presence marks a complete checkpoint


def load_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, scaler: Any, device: str | torch.device) -> dict[str, Any]:
    """Restore everything `save_training_state` wrote; returns the saved `state` dict."""
    path = Path(path)
    tpath, jpath = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not (tpath.is_file() and jpath.is_file()):
        raise CheckpointError(f"no complete checkpoint at {path} (need {tpath.name} and {jpath.name})")
    tensors = read_safetensors(tpath, "cpu")
    info = json.loads(jpath.read_text(encoding="utf-8"))
    model_state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{tpath} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    # load_state_dict moves each state tensor to its parameter's device (and keeps "step" where torch wants it)
    optimizer.load_state_dict(unflatten_optimizer(
        {k: v for k, v in tensors.items() if k.startswith(OPTIM_PREFIX)}, info["optimizer"]))
    if scheduler is not None and info.get("scheduler") is not None:
        scheduler.load_state_dict(info["scheduler"])
    if scaler is not None and info.get("scaler") is not None:
        scaler.load_state_dict(info["scaler"])
    torch.set_rng_state(tensors[RNG_CPU])
    if RNG_CUDA in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[RNG_CUDA])
    return info["state"]


RUN_FILE = "run.json"
WEIGHTS_FILE = "model.safetensors"


def weights_id(path: str | Path) -> str:
    """Short content hash of a weights file (identifies a trained model in score tables)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()[:12]


def write_run_record(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write run.json: model name and config, data spec, train/data/feature configs, versions."""
    _atomic_json({**record, "versions": versions()}, Path(run_dir) / RUN_FILE)


def read_run_record(run_dir: str | Path) -> dict[str, Any]:
    """The run.json of a run directory (a clear error when the directory is not a trained run)."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a SentiFlow run directory (no {RUN_FILE}); "
                              "train one with `sentiflow train`")
    return json.loads(path.read_text(encoding="utf-8"))


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained model from its run directory (best weights) in eval mode, with its run record."""
    from models.base import ModelSpec, build_model

    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{run_dir} has no trained weights ({WEIGHTS_FILE}); training did not finish an epoch")
    spec = ModelSpec.from_dict(record["spec"])
    model = build_model(record["model"], spec, record["model_config"])
    load_weights(model, weights, device)
    model.to(device).eval()
    record["model_id"] = f"{record['model']}@{weights_id(weights)}"
    return model, record
