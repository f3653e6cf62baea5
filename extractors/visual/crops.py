"""Square face crops (e.g. 128x128) from tracked boxes, with margin and optional eye alignment, batched on device."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def crop_geometry(boxes: np.ndarray, landmarks: np.ndarray | None, margin: float,
                  align: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (N,2), square sides (N,) and rotation angles (N,) of the crops for boxes (N,4) px.

    The side is the box's longer side grown by `margin` of it on every side; with `align`, the crop is rotated so the
    eyes (MTCNN landmarks 0 and 1) lie on a horizontal line.
    """
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1.0 + 2.0 * margin)
    angles = np.zeros(len(boxes), np.float32)
    if align and landmarks is not None and len(landmarks):
        eye = landmarks[:, 1] - landmarks[:, 0]
        angles = np.arctan2(eye[:, 1], eye[:, 0]).astype(np.float32)
    return centres.astype(np.float32), np.maximum(sides, 1.0).astype(np.float32), angles


def downscale_factor(side: float, size: int) -> int:
    """The integer box-filter factor applied before cutting a crop of `side` px down to `size` px."""
    return max(1, int(math.floor(float(side) / size)))


@torch.inference_mode()
def crop_faces(frames: torch.Tensor, centres: np.ndarray, sides: np.ndarray, angles: np.ndarray,
               size: int, factor: int | None = None) -> torch.Tensor:
    """uint8 frames (N,H,W,3) on any device -> uint8 crops (N,size,size,3); outside the frame is black.

    A box-filter downscale by the integer `factor` (default: from the batch's median side / size) is applied first,
    so large faces are not aliased.
    """
    n, h, w = frames.shape[:3]
    if n == 0:
        return torch.zeros((0, size, size, 3), dtype=torch.uint8, device=frames.device)
    x = frames.permute(0, 3, 1, 2).float()
    if factor is None:
        factor = downscale_factor(float(np.median(sides)), size)
    if factor > 1 and min(h, w) >= 2 * factor:
        x = F.avg_pool2d(x, factor, ceil_mode=True)
    hh, ww = x.shape[2:]
    sx, sy = ww / float(w), hh / float(h)
    cos, sin = np.cos(angles), np.sin(angles)
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0] = sides * sx / ww * cos
    theta[:, 0, 1] = -sides * sx / ww * sin
    theta[:, 0, 2] = 2.0 * centres[:, 0] * sx / ww - 1.0
    theta[:, 1, 0] = sides * sy / hh * sin
    theta[:, 1, 1] = sides * sy / hh * cos
    theta[:, 1, 2] = 2.0 * centres[:, 1] * sy / hh - 1.0
    grid = F.affine_grid(torch.from_numpy(theta).to(x.device), [n, 3, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@torch.inference_mode()
def crop_each_face(frames: Sequence[torch.Tensor] | torch.Tensor, frame_of: np.ndarray, centres: np.ndarray,
                   sides: np.ndarray, angles: np.ndarray, size: int,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Crops (K,size,size,3) on `device` of K faces, face k cut from the uint8 (H,W,3) frame frames[frame_of[k]],
    each with its own downscale factor.

    A crop depends only on its frame and its face's geometry, never on the faces cropped beside it, so cropping
    per clip chunk and cropping while the detector holds the frames give the same pixels.
    """
    out = torch.zeros((len(frame_of), size, size, 3), dtype=torch.uint8, device=device)
    if not len(frame_of):
        return out
    groups: dict[tuple, list[int]] = {}         # one crop_faces call per downscale factor and frame size
    for k, (i, s) in enumerate(zip(frame_of, sides)):
        groups.setdefault((downscale_factor(s, size), tuple(frames[int(i)].shape)), []).append(k)
    for (factor, _), ks in groups.items():
        sel = np.asarray(ks)
        picked = torch.stack([frames[int(i)] for i in frame_of[sel]]).to(device)
        out[torch.from_numpy(sel).to(out.device)] = crop_faces(picked, centres[sel], sides[sel], angles[sel],
                                                               size, factor)
    return out
