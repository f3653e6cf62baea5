"""Batched MTCNN face detection (facenet-pytorch, weights in its wheel) across frames and videos of any size."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import ConfigError


@dataclass
class FrameFaces:
    """All faces MTCNN found in one frame: boxes (K,4) x1,y1,x2,y2 px, probs (K,), landmarks (K,5,2) px.

    `onet_boxes` (K,4) px, when set, are the square windows O-Net looked at to find each face (what tracking
    feeds O-Net in the next frames).
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray
    onet_boxes: np.ndarray | None = None

    @classmethod
    def empty(cls) -> "FrameFaces":
        """A frame without faces."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def detection_scale(height: int, width: int, max_side: int) -> float:
    """Downscale factor (<= 1) that brings the longer side to at most `max_side` (0: no limit)."""
    if max_side <= 0 or max(height, width) <= max_side:
        return 1.0
    return max_side / float(max(height, width))


def resize_for_detection(frames: torch.Tensor, max_side: int) -> tuple[torch.Tensor, float]:
    """uint8 (N,H,W,3) -> frames whose longer side is <= max_side (area resampling) and the scale applied."""
    h, w = frames.shape[1:3]
    s = detection_scale(h, w, max_side)
    if s == 1.0:
        return frames, 1.0
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(nh, nw), mode="area")
    out = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return out, nw / float(w)


class FaceDetector:
    """MTCNN wrapper: detects faces in many frames of any sizes at once (frames of several videos together)."""

    def __init__(self, device: str | torch.device = "cpu", min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709, batch_size: int = 64,
                 min_face_fraction: float = 0.0) -> None:
        self.device = torch.device(device)
        self.min_face_size = int(min_face_size)
        self.min_face_fraction = float(min_face_fraction)   # of the frame's shorter side; min_face_size is the floor
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.batch_size = max(1, int(batch_size))
        self._mtcnn = None

    @property
    def mtcnn(self):  # noqa: ANN201 - facenet_pytorch.MTCNN
        """The MTCNN model, loaded on first use (its weights ship inside the facenet-pytorch wheel)."""
        if self._mtcnn is None:
            try:
                from facenet_pytorch import MTCNN
            except ImportError as exc:
                raise ConfigError("face detection needs facenet-pytorch (pip install --no-deps facenet-pytorch)") \
                    from exc
            self._mtcnn = MTCNN(keep_all=True, device=self.device, min_face_size=self.min_face_size,
                                thresholds=self.thresholds, factor=self.factor, post_process=False)
        return self._mtcnn

    @torch.inference_mode()
    def _detect_tensor(self, frames: torch.Tensor) -> list[FrameFaces]:
        """MTCNN on an equal-size uint8 batch (N,H,W,3) already on the device."""
        boxes, probs, points = self.mtcnn.detect(frames, landmarks=True)
        out = []
        for b, p, lm in zip(boxes, probs, points):
            if b is None or len(b) == 0:
                out.append(FrameFaces.empty())
            else:
                out.append(FrameFaces(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(p, np.float32).reshape(-1),
                                      np.asarray(lm, np.float32).reshape(-1, 5, 2)))
        return out

    def pyramid_min_face(self, height: int, width: int) -> float:
        """Smallest face (px) the P-Net pyramid looks for in a frame of this size."""
        return max(float(self.min_face_size), self.min_face_fraction * min(height, width))

    def detect_one(self, frame: np.ndarray | torch.Tensor) -> FrameFaces:
        """Detect faces in a single frame (the per-frame baseline most toolkits use)."""
        t = torch.as_tensor(np.asarray(frame)).to(self.device)
        return self._detect_tensor(t.unsqueeze(0))[0]

    def detect(self, frames: Sequence[np.ndarray | torch.Tensor]) -> list[FrameFaces]:
        """Detect faces in frames of any sizes in one pass: P-Net per size group, R-Net/O-Net over all frames."""
        out: list[FrameFaces] = []
        for s in range(0, len(frames), self.batch_size):
            out.extend(self._detect_multi(frames[s: s + self.batch_size]))
        return out

    @torch.inference_mode()
    def _detect_multi(self, frames: Sequence[np.ndarray | torch.Tensor]) -> list[FrameFaces]:
        """facenet-pytorch's detect_face, generalised to a batch of frames with different sizes.

        Same maths per frame as the stock per-frame call (same pyramid, NMS and crop clipping per frame), so the
        boxes equal per-frame detection; the cost is one P-Net call per pyramid level per frame size and one
        R-Net and one O-Net call for the whole batch.
        The networks get channels-last inputs: P-, R- and O-Net run about 2x faster on CPU so (measured; the
        results differ from the stock call by float rounding only).
        """
        from facenet_pytorch.models.utils.detect_face import (
            batched_nms,
            bbreg,
            fixed_batch_process,
            generateBoundingBox,
            imresample,
            rerec,
        )
        m = self.mtcnn
        dtype = next(m.pnet.parameters()).dtype
        images: list[torch.Tensor] = [torch.as_tensor(np.asarray(f)).to(self.device) for f in frames]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(images):
            groups.setdefault(tuple(f.shape[:2]), []).append(i)
        sizes = torch.tensor([[f.shape[1], f.shape[0]] for f in images], dtype=torch.int64)   # (w, h)
        chw = [f.permute(2, 0, 1).to(dtype).contiguous() for f in images]   # contiguous: crops resample fast
        all_boxes, all_inds = [], []
        for (h, w), idx in groups.items():
            batch = torch.stack([chw[i] for i in idx])
            index = torch.as_tensor(idx, device=self.device)
            m12 = 12.0 / self.pyramid_min_face(h, w)
            scales, scale_i, minl = [], m12, min(h, w) * m12
            while minl >= 12:
                scales.append(scale_i)
                scale_i *= self.factor
                minl *= self.factor
            for scale in scales:
                im_data = (imresample(batch, (int(h * scale + 1), int(w * scale + 1))) - 127.5) * 0.0078125
                reg, probs = m.pnet(im_data.contiguous(memory_format=torch.channels_last))
                boxes_scale, inds_scale = generateBoundingBox(reg, probs[:, 1], scale, self.thresholds[0])
                inds_scale = index[inds_scale]
                pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], inds_scale, 0.5)
                all_boxes.append(boxes_scale[pick])
                all_inds.append(inds_scale[pick])
        n = len(images)
        if not all_boxes:
            return [FrameFaces.empty() for _ in range(n)]
        boxes, image_inds = torch.cat(all_boxes), torch.cat(all_inds)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[pick], image_inds[pick]
        regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                             boxes[:, 4]]).permute(1, 0)
        boxes = rerec(boxes)
        if len(boxes):
            im_data, keep = _crops(chw, boxes, image_inds, sizes, 24)
            boxes, image_inds = boxes[keep], image_inds[keep]
            out = fixed_batch_process(im_data.contiguous(memory_format=torch.channels_last), m.rnet)
            score = out[1][:, 1]
            ipass = score > self.thresholds[1]
            boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
            image_inds, mv = image_inds[ipass], out[0][ipass]
            pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
            boxes = rerec(bbreg(boxes[pick], mv[pick]))
            image_inds = image_inds[pick]
        boxes, image_inds, points, windows = self._onet(chw, sizes, boxes, image_inds)
        return _split_by_frame(boxes, points, image_inds, windows, n)

    def _onet(self, chw: list[torch.Tensor], sizes: torch.Tensor, boxes: torch.Tensor,
              image_inds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """O-Net on square candidate boxes (M,>=4): faces above the O-Net threshold, boxes (K,5) with prob,
        frame indices (K,), landmarks (K,5,2) and the input windows (K,4), after MTCNN's per-frame 'Min' NMS."""
        from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg, fixed_batch_process

        m = self.mtcnn
        points = torch.zeros(0, 5, 2, device=self.device)
        windows = boxes[:0, :4]
        if len(boxes):
            im_data, keep = _crops(chw, boxes, image_inds, sizes, 48)
            boxes, image_inds = boxes[keep], image_inds[keep]
            out = fixed_batch_process(im_data.contiguous(memory_format=torch.channels_last), m.onet)
            score = out[2][:, 1]
            ipass = score > self.thresholds[2]
            pts = out[1][ipass].permute(1, 0)
            boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
            image_inds, mv = image_inds[ipass], out[0][ipass]
            windows = boxes[:, :4].clone()
            w_i = boxes[:, 2] - boxes[:, 0] + 1
            h_i = boxes[:, 3] - boxes[:, 1] + 1
            px = w_i.repeat(5, 1) * pts[:5, :] + boxes[:, 0].repeat(5, 1) - 1
            py = h_i.repeat(5, 1) * pts[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
            points = torch.stack((px, py)).permute(2, 1, 0)
            boxes = bbreg(boxes, mv)
            pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
            boxes, image_inds, points, windows = boxes[pick], image_inds[pick], points[pick], windows[pick]
        return boxes, image_inds, points, windows

    @torch.inference_mode()
    def refine(self, frames: Sequence[np.ndarray | torch.Tensor], windows: Sequence[np.ndarray]) -> list[FrameFaces]:
        """O-Net only: look for a face in each given window (K_i,4 px, square) of frame i.

        The cheap tracking step between full detections: fed the windows O-Net looked at on the last keyframe
        (`FrameFaces.onet_boxes`), O-Net sees a still face exactly as it did there and regresses a moved one's box,
        probability and landmarks. Windows where O-Net finds no face (below its threshold) give nothing.
        """
        n = len(frames)
        dtype = next(self.mtcnn.onet.parameters()).dtype
        images = [torch.as_tensor(np.asarray(f)).to(self.device) for f in frames]
        sizes = torch.tensor([[f.shape[1], f.shape[0]] for f in images], dtype=torch.int64).reshape(-1, 2)
        chw = [f.permute(2, 0, 1).to(dtype).contiguous() for f in images]
        start = [np.asarray(b, np.float32).reshape(-1, 4) for b in windows]
        cand = torch.as_tensor(np.concatenate(start + [np.zeros((0, 4), np.float32)]), device=self.device)
        image_inds = torch.as_tensor(np.repeat(np.arange(n), [len(b) for b in start]), device=self.device)
        cand = torch.cat([cand.to(dtype), torch.zeros(len(cand), 1, dtype=dtype, device=self.device)], dim=1)
        boxes, image_inds, points, used = self._onet(chw, sizes, cand, image_inds)
        return _split_by_frame(boxes, points, image_inds, used, n)


def _split_by_frame(boxes: torch.Tensor, points: torch.Tensor, image_inds: torch.Tensor, windows: torch.Tensor,
                    n: int) -> list[FrameFaces]:
    """Faces of a whole batch (boxes (K,5) with prob, landmarks (K,5,2), frame indices (K,), O-Net windows (K,4))
    -> one FrameFaces per frame, largest face first."""
    boxes_np, points_np, inds_np = boxes.cpu().numpy(), points.cpu().numpy(), image_inds.cpu().numpy()
    windows_np = windows.cpu().numpy()
    results = []
    for i in range(n):
        sel = np.nonzero(inds_np == i)[0]
        if not len(sel):
            results.append(FrameFaces.empty())
            continue
        b, p = boxes_np[sel], points_np[sel]
        order = np.argsort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[::-1]   # largest first, as MTCNN
        results.append(FrameFaces(b[order, :4].astype(np.float32), b[order, 4].astype(np.float32),
                                  p[order].astype(np.float32), windows_np[sel][order].astype(np.float32)))
    return results


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run many tiny CPU ops on one thread: thread start-up costs 10-20x the work of a 24x24 resample."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _crops(chw: list[torch.Tensor], boxes: torch.Tensor, image_inds: torch.Tensor, sizes: torch.Tensor,
           size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate crops clipped to their own frame and resized (area) to size x size, as facenet-pytorch does."""
    from facenet_pytorch.models.utils.detect_face import imresample

    b = boxes[:, :4].trunc().int().cpu().numpy()
    inds = image_inds.cpu().numpy()
    wh = sizes.numpy()[inds]
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], wh[:, 0]), np.minimum(b[:, 3], wh[:, 1])
    data, keep = [], []
    with _one_cpu_thread(boxes.device):
        for k in range(len(b)):
            if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
                img = chw[inds[k]][:, y[k] - 1: ey[k], x[k] - 1: ex[k]].unsqueeze(0)
                data.append(imresample(img, (size, size)))
                keep.append(k)
    if not data:
        return torch.zeros(0, 3, size, size, device=boxes.device), torch.as_tensor(keep, dtype=torch.int64)
    return ((torch.cat(data) - 127.5) * 0.0078125,
            torch.as_tensor(keep, dtype=torch.int64, device=boxes.device))
