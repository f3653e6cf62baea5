"""A model's view of the batch's modalities: which ones the data has, their inputs and their sizes."""

from __future__ import annotations

import torch

from models.base import ModelSpec
from pipeline.config import ConfigError
from pipeline.modalities import MODALITIES


def require_keys(batch: dict[str, torch.Tensor], keys: list[str], model: str) -> None:
    """Raise a clear error naming the batch keys a model needs but did not get."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"model {model!r} needs batch key(s) {', '.join(missing)}; the batch has "
                       f"{', '.join(sorted(batch)) or 'nothing'} (check the dataset's modalities and "
                       f"aligned/unaligned mode)")


def modality_inputs(batch: dict[str, torch.Tensor], modality: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, mask) of one unaligned modality, the mask zeroed where the modality is absent for a sample."""
    x = batch[modality]
    mask = batch.get(f"{modality}_mask")
    if mask is None:
        mask = torch.ones(x.shape[:2], device=x.device, dtype=x.dtype)
    if "present" in batch:
        mask = mask * present_column(batch, modality).unsqueeze(1).to(mask.dtype)
    return x, mask


def present_column(batch: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
    """(B,) 1 where the sample has `modality`, 0 where it was masked out (all ones when the batch says nothing)."""
    present = batch.get("present")
    if present is None:
        ref = next(iter(batch.values()))
        return torch.ones(ref.shape[0], device=ref.device)
    return present[:, MODALITIES.index(modality)].float()


def available_modalities(spec: ModelSpec, wanted: list[str] | tuple[str, ...], model: str,
                         require: bool = True) -> list[str]:
    """The wanted modalities the dataset has, in canonical order; an error when it has none and `require`."""
    used = [m for m in MODALITIES if m in wanted and spec.dims.get(m)]
    if not used and require:
        raise ConfigError(f"model {model!r} uses {', '.join(wanted)} but the dataset has only "
                          f"{', '.join(sorted(spec.dims)) or 'no'} features")
    return used


def check_modalities(names: list[str], field_name: str, model: str, allow_empty: bool = False) -> None:
    """Validate a config list of modality names."""
    if not names and not allow_empty:
        raise ConfigError(f"model.{model}.{field_name} must name at least one modality")
    bad = [n for n in names if n not in MODALITIES]
    if bad:
        raise ConfigError(f"model.{model}.{field_name}: unknown modality {', '.join(bad)}; "
                          f"choose from {', '.join(MODALITIES)}")


def modality_dim(spec: ModelSpec, modalities: list[str], model: str) -> int:
    """Summed feature dim of some modalities, with a clear error when the data lacks one."""
    missing = [m for m in modalities if m not in spec.dims]
    if missing:
        raise ConfigError(f"model {model!r} uses {', '.join(missing)} but the dataset has only "
                          f"{', '.join(sorted(spec.dims)) or 'no'} features")
    return sum(spec.dims[m] for m in modalities)


def aligned_input(batch: dict[str, torch.Tensor], modalities: list[str], model: str) -> torch.Tensor:
    """Feature-wise concatenation of word-aligned modality sequences (B, T_w, sum D)."""
    keys = [f"aligned_{m}" for m in modalities]
    require_keys(batch, keys + ["aligned_mask"], model)
    return torch.cat([batch[k].float() for k in keys], dim=-1)
