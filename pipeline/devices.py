"""Choose the torch device from a user setting."""

from __future__ import annotations

import torch

from pipeline.config import ConfigError


def resolve_device(setting: str = "auto") -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is an error naming the setting."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if setting != "cpu" and not setting.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {setting!r}")
    return torch.device(setting)
