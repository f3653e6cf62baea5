"""Checkpoints without pickle: tensors in safetensors, everything else (scalars, config) in JSON.

A training checkpoint flattens the model weights, the optimizer's per-parameter state and the RNG
states into one safetensors file, and the optimizer's param groups, scheduler and scaler state,
epoch counters and history into a JSON file next to it, so resuming continues the same curve.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import SentiFlowError
from pipeline.files import atomic_write, atomic_write_json
from pipeline.system import library_versions

MODEL_PREFIX = "model."
OPTIM_PREFIX = "optim."
RNG_CPU = "rng.cpu"
RNG_CUDA = "rng.cuda"
CHECKPOINT_FORMAT = 2     # 2: one optimizer and schedule per update step of the current training phase



class CheckpointError(SentiFlowError):
    """A checkpoint is missing, incomplete, or does not match the model."""


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))


def json_default(o: Any) -> Any:
    """JSON for the values a checkpoint or run record holds besides plain ones: tensors and paths."""
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


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Model weights (parameters and buffers) to safetensors."""
    _atomic_save(dict(model.state_dict()), Path(path))


def load_weights(model: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    """Load weights saved by `save_weights`, refusing missing or unexpected keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    state = read_safetensors(path, device)
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(f"{path} holds weights that are not finite numbers (NaN or inf) in "
                              f"{', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''}; the model is damaged "
                              "(or training diverged): train it again")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def flatten_optimizer(optimizer: torch.optim.Optimizer, prefix: str = OPTIM_PREFIX
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (per-parameter state, keys under `prefix`) and JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars, "ids": [str(k) for k in sd["state"]]}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any], prefix: str = OPTIM_PREFIX
                        ) -> dict[str, Any]:
    """Rebuild the state_dict that `flatten_optimizer` split."""
    state: dict[int, dict[str, Any]] = {int(pid): {} for pid in info["ids"]}
    for key, value in tensors.items():
        if key.startswith(prefix):
            pid, name = key[len(prefix):].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    for pid, sc in info["scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    return {"state": state, "param_groups": info["param_groups"]}


def save_training_state(path: str | Path, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                        schedules: dict[str, Any], scaler: Any, state: dict[str, Any]) -> None:
    """Write `<path>.safetensors` (weights, every optimizer's tensors, RNG) and `<path>.json` (the rest)."""
    path = Path(path)
    tensors = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    optim_info: dict[str, Any] = {}
    for name, optimizer in optimizers.items():
        opt_tensors, optim_info[name] = flatten_optimizer(optimizer, f"{OPTIM_PREFIX}{name}.")
        tensors.update(opt_tensors)
    tensors[RNG_CPU] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors[RNG_CUDA] = torch.cuda.get_rng_state()
    info = {"format": CHECKPOINT_FORMAT, "optimizers": optim_info,
            "schedules": {name: s.state_dict() for name, s in schedules.items()},
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            "state": state, "versions": library_versions()}
    _atomic_save(tensors, path.with_suffix(".safetensors"))
    atomic_write_json(path.with_suffix(".json"), info, default=json_default)   # last: marks a complete checkpoint


def load_training_state(path: str | Path, model: torch.nn.Module,
                        optimizers: Callable[[dict[str, Any]], tuple[dict[str, torch.optim.Optimizer], dict[str, Any]]],
                        scaler: Any, device: str | torch.device) -> dict[str, Any]:
    """Restore everything `save_training_state` wrote; returns the saved `state` dict. `optimizers(state)` hands
    back the optimizers and schedules to fill, set up for the saved state (e.g. its training phase)."""
    path = Path(path)
    tpath, jpath = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not (tpath.is_file() and jpath.is_file()):
        raise CheckpointError(f"no complete checkpoint at {path} (need {tpath.name} and {jpath.name})")
    tensors = read_safetensors(tpath, "cpu")
    try:
        info = json.loads(jpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{jpath}: cannot read the checkpoint ({exc}); train without --resume") from None
    if info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{jpath} was written by another SentiFlow version (checkpoint format "
                              f"{info.get('format')!r}, this one reads {CHECKPOINT_FORMAT}); train without --resume")
    model_state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{tpath} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    opts, schedules = optimizers(info["state"])
    if set(opts) != set(info["optimizers"]):
        raise CheckpointError(f"{jpath} holds optimizers {sorted(info['optimizers'])} but the model's current phase "
                              f"updates {sorted(opts)}; train without --resume")
    for name, optimizer in opts.items():
        # load_state_dict moves each state tensor to its parameter's device (and keeps "step" where torch wants it)
        prefix = f"{OPTIM_PREFIX}{name}."
        optimizer.load_state_dict(unflatten_optimizer(
            {k: v for k, v in tensors.items() if k.startswith(prefix)}, info["optimizers"][name], prefix))
    for name, schedule in schedules.items():
        if info["schedules"].get(name) is not None:
            schedule.load_state_dict(info["schedules"][name])
    if scaler is not None and info.get("scaler") is not None:
        scaler.load_state_dict(info["scaler"])
    torch.set_rng_state(tensors[RNG_CPU])
    if RNG_CUDA in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[RNG_CUDA])
    return info["state"]
