"""The `face` extractor: batched MTCNN detection, speaker-face tracking, per-frame geometry and optional crops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from extractors.base import (Extractor, ExtractionFailed, Features, FeatureUnavailable, MediaItem,
                             register_extractor)
from extractors.face_geometry import GEOMETRY_FEATURES, LANDMARK_NAMES, face_geometry
from extractors.visual_crops import crop_faces, crop_geometry
from extractors.visual_detect import FaceDetector, FrameFaces, resize_for_detection
from extractors.visual_frames import round_robin_chunks
from extractors.visual_sequence import masked_sequence_features
from extractors.visual_track import SpeakerTrack, select_speaker
from pipeline.config import ConfigBase, ConfigError


@dataclass
class FaceConfig(ConfigBase):
    """Face detection and tracking (defaults: VAE-AMDT's T_v = 64 steps of the speaker's face at 8 fps)."""

    seq_len: int = 64                    # fixed length T_v of the padded/fitted sequence
    fit: str = "pool"                    # how a longer sequence is shortened: "pool" or "truncate"
    detect_max_side: int = 640           # frames are downscaled so their longer side is at most this for MTCNN
    min_face_size: int = 20              # smallest face MTCNN looks for, in detection pixels
    thresholds: list[float] = field(default_factory=lambda: [0.6, 0.7, 0.7])   # P-Net, R-Net, O-Net
    pyramid_factor: float = 0.709        # MTCNN image-pyramid scale step
    detect_batch_size: int = 64          # frames per MTCNN call (frames of several clips are mixed)
    min_prob: float = 0.9                # detections below this probability are not tracked
    track_iou: float = 0.3               # box overlap needed to continue a track
    max_gap_seconds: float = 1.0         # a track survives this long without a detection (occlusion, blur)
    save_crops: bool = False             # store uint8 crops (T, crop_size, crop_size, 3) in the cache (large)
    crop_size: int = 128
    crop_margin: float = 0.1             # added on every side, as a fraction of the box's longer side
    align_crops: bool = True             # rotate crops so the eyes are horizontal


@dataclass
class _VideoState:
    """Per-clip accumulation while frames stream through the detector."""

    detections: list[FrameFaces] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)       # (width, height) of decoded, upright frames
    error: Exception | None = None


@register_extractor
class FaceExtractor(Extractor):
    """Per sampled frame: the speaker's tracked face box, 5 landmarks, probability and geometry descriptors."""

    name = "face"
    version = "1"
    modality = "visual"
    Config = FaceConfig
    requires = frozenset({"video"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c: FaceConfig = self.config
        if c.fit not in ("pool", "truncate"):
            raise ConfigError(f"extractors.face.fit must be 'pool' or 'truncate', got {c.fit!r}")
        if len(c.thresholds) != 3:
            raise ConfigError(f"extractors.face.thresholds needs 3 values (P-, R-, O-Net), got {c.thresholds}")
        self.detector = FaceDetector(self.device, c.min_face_size, c.thresholds, c.pyramid_factor,
                                     c.detect_batch_size)   # MTCNN weights load on first use

    def media_settings(self) -> dict:
        return {"video_fps": self.media.video_fps, "max_frame_side": self.media.max_frame_side}

    def detect_videos(self, paths: Sequence[str]) -> list[_VideoState]:
        """Detect faces in every sampled frame of each video, batching frames of several videos per MTCNN call."""
        c: FaceConfig = self.config
        states = [_VideoState() for _ in paths]
        pending: list[tuple[int, torch.Tensor, float]] = []     # (video, detection-size frame, scale)

        def flush() -> None:
            found = self.detector.detect([f for _, f, _ in pending])
            for (i, _, scale), faces in zip(pending, found):
                if len(faces):
                    faces = FrameFaces(faces.boxes / scale, faces.probs, faces.landmarks / scale)
                states[i].detections.append(faces)
            pending.clear()

        for i, frames, times, err in round_robin_chunks(paths, self.media):
            if err is not None:
                states[i].error = err
                continue
            states[i].frame_size = (int(frames.shape[2]), int(frames.shape[1]))
            small, scale = resize_for_detection(torch.from_numpy(frames), c.detect_max_side)
            states[i].times.append(times)
            pending.extend((i, f, scale) for f in small)
            if len(pending) >= c.detect_batch_size:
                flush()
        if pending:
            flush()
        return states

    def track(self, state: _VideoState) -> SpeakerTrack:
        """The speaker's face through one clip's detections."""
        c: FaceConfig = self.config
        w, h = state.frame_size
        return select_speaker(state.detections, float(w * h), c.min_prob, c.track_iou,
                              max(0, int(round(c.max_gap_seconds * self.media.video_fps))))

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: FaceConfig = self.config
        states = self.detect_videos([item.path for item in batch])
        results: list[Features | Exception] = []
        for item, state in zip(batch, states):
            n = len(state.detections)
            if state.error is not None and n == 0:
                results.append(ExtractionFailed(str(state.error)))
                continue
            track = self.track(state)
            if not track.present.any():
                results.append(FeatureUnavailable(f"no face detected in {n} sampled frames"))
                continue
            results.append(self._features(item, state, track))
        if c.save_crops:
            self._add_crops(batch, states, results)
        return results

    def _features(self, item: MediaItem, state: _VideoState, track: SpeakerTrack) -> Features:
        c: FaceConfig = self.config
        w, h = state.frame_size
        geometry = face_geometry(track.boxes, track.landmarks, track.probs, track.present, (w, h),
                                 self.media.video_fps)
        times = torch.from_numpy(np.concatenate(state.times))
        present = torch.from_numpy(track.present.astype(np.float32))
        tensors = masked_sequence_features(torch.from_numpy(geometry), times, present, c.seq_len, c.fit)
        scale = np.array([w, h, w, h], np.float32)
        tensors["boxes"] = torch.from_numpy(track.boxes / scale)                       # (T,4) in [0,1] frame units
        tensors["landmarks"] = torch.from_numpy(track.landmarks / np.array([w, h], np.float32))   # (T,5,2)
        tensors["probs"] = torch.from_numpy(track.probs)
        n_faces = np.array([int((f.probs >= c.min_prob).sum()) for f in state.detections], np.int64)
        tensors["faces_per_frame"] = torch.from_numpy(n_faces)
        meta = {
            "rate_hz": self.media.video_fps, "dim": len(GEOMETRY_FEATURES), "feature_names": list(GEOMETRY_FEATURES),
            "landmark_names": list(LANDMARK_NAMES), "frame_size": [w, h],
            "n_frames": int(len(track.present)), "n_face_frames": int(track.present.sum()),
            "coverage": track.coverage, "n_tracks": track.n_tracks, "track_score": track.score,
            "multi_face_frames": track.n_multi_face_frames,
            "truncated_decode": str(state.error) if state.error is not None else None,
            "box_units": "fraction of frame width/height (x1, y1, x2, y2)",
        }
        return Features(tensors=tensors, meta=meta)

    def _add_crops(self, batch: Sequence[MediaItem], states: list[_VideoState],
                   results: list[Features | Exception]) -> None:
        """Second decoding pass: cut the tracked face out of each frame into `crops` (only when asked)."""
        c: FaceConfig = self.config
        todo = [k for k, r in enumerate(results) if isinstance(r, Features)]
        crops: dict[int, list[torch.Tensor]] = {k: [] for k in todo}
        offsets = {k: 0 for k in todo}
        for j, frames, _, err in round_robin_chunks([batch[k].path for k in todo], self.media):
            k = todo[j]
            if err is not None:
                continue
            feats = results[k]
            w, h = states[k].frame_size
            sl = slice(offsets[k], offsets[k] + len(frames))
            offsets[k] += len(frames)
            boxes = feats.tensors["boxes"][sl].numpy() * np.array([w, h, w, h], np.float32)
            lms = feats.tensors["landmarks"][sl].numpy() * np.array([w, h], np.float32)
            present = feats.tensors["face_present"][sl].numpy() > 0
            out = torch.zeros((len(frames), c.crop_size, c.crop_size, 3), dtype=torch.uint8)
            if present.any():
                centres, sides, angles = crop_geometry(boxes[present], lms[present], c.crop_margin, c.align_crops)
                sel = torch.from_numpy(frames[present]).to(self.device)
                out[torch.from_numpy(present)] = crop_faces(sel, centres, sides, angles, c.crop_size).cpu()
            crops[k].append(out)
        for k in todo:
            n = len(states[k].detections)
            got = torch.cat(crops[k]) if crops[k] else torch.zeros((0, c.crop_size, c.crop_size, 3), dtype=torch.uint8)
            if len(got) < n:      # the second decode ended early: those frames get black crops
                pad = torch.zeros((n - len(got), c.crop_size, c.crop_size, 3), dtype=torch.uint8)
                got = torch.cat([got, pad])
            results[k].tensors["crops"] = got[:n].contiguous()
            results[k].meta["crop_size"] = c.crop_size
