"""The `face` extractor: batched MTCNN detection, speaker-face tracking, per-frame geometry and optional crops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from extractors import stages
from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem
from extractors.visual.crops import crop_faces, crop_geometry
from extractors.visual.detect import FaceDetector, FrameFaces, resize_for_detection
from extractors.visual.frames import round_robin_chunks
from extractors.visual.geometry import (
    GEOMETRY_FEATURES,
    LANDMARK_NAMES,
    face_geometry,
    from_frame_units,
    to_frame_units,
)
from extractors.visual.sequence import masked_sequence_features
from extractors.visual.track import SpeakerTrack, box_iou, select_speaker
from pipeline.config import ConfigBase, ConfigError


@dataclass
class FaceConfig(ConfigBase):
    """Face detection and tracking (defaults: VAE-AMDT's T_v = 64 steps of the speaker's face at 8 fps).

    Cost controls (issue #8; MTCNN was 69% of CPU extraction time at 0.11 s per frame):

    * `detect_fps`: the full MTCNN (P-Net pyramid, R-Net, O-Net) runs on keyframes at this rate; every other
      sampled frame runs O-Net only, in the windows where O-Net found the keyframe's faces. A frame falls back to
      the full detector when the keyframe had no face of `min_prob`, when O-Net loses one of them there, or when
      the frame's grey levels differ from the keyframe's by more than `scene_cut` (mean absolute change of a
      16x16 thumbnail, 0-1; within the 20 real clips of ../shared/clips it never exceeds 0.17). A keyframe where
      the full MTCNN misses a face the previous keyframe had also gets O-Net in that face's window. Outputs stay
      per sampled frame with the same tensors; faces that appear between keyframes are found at the next one.
      `detect_fps: null` (or >= the sampling rate) = full MTCNN on every frame, the version-1 path.
    * `min_face_fraction`: the P-Net pyramid starts at faces of this fraction of the detection frame's shorter
      side (never below `min_face_size` px), dropping the largest, costliest pyramid levels. A talking head's
      face is large: the smallest speaker face in the 19 talking heads of ../shared/clips is 25% of the shorter
      side (median 52%), so 0.1 keeps a 2.5x margin. Per full detection (one run, loaded 2-core CPU) it cut the
      time from 226 to 148 ms at 596x336, 351 to 133 ms at 640x640 and 110 to 92 ms at 224x224 (20 -> 22 px).
      Scenes with small faces (a street: faces 4-6% of the frame height) need `min_face_fraction: 0`.

    Agreement with the version-1 path (full MTCNN on every frame, min face 20 px) on those 19 clips (1,066
    frames at 8 fps), speaker box IoU / landmark error in inter-ocular distances / coverage:
    keyframes at 2 fps alone 0.944 / 0.030 / 100% (26% of frames through the full MTCNN); min_face_fraction 0.1
    alone (every frame) 0.924 / 0.041 / 99.8% (MTCNN's own sensitivity to its pyramid scales); both (the
    defaults) 0.921 / 0.043 / 100%.
    """

    seq_len: int = 64                    # fixed length T_v of the padded/fitted sequence
    fit: str = "pool"                    # how a longer sequence is shortened: "pool" or "truncate"
    detect_max_side: int = 640           # frames are downscaled so their longer side is at most this for MTCNN
    min_face_size: int = 20              # smallest face MTCNN looks for, in detection pixels (absolute floor)
    min_face_fraction: float = 0.1       # ... and as a fraction of the frame's shorter side (see above)
    detect_fps: float | None = 2.0       # full MTCNN rate (keyframes); None or >= video_fps: every sampled frame
    scene_cut: float = 0.25              # mean abs grey change vs the keyframe (0-1) that forces a full detection
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


class FaceRider(Protocol):
    """An extractor computed per detected face while face detection holds the frames (each video decoded once)."""

    name: str

    def per_face(self, frames: Sequence[torch.Tensor], frame_of: np.ndarray, boxes: np.ndarray,
                 landmarks: np.ndarray) -> torch.Tensor:
        """Rows (K, F) for K faces (boxes (K,4), landmarks (K,5,2) px), face k in frame frames[frame_of[k]]."""
        ...


@dataclass
class _VideoState:
    """Per-clip accumulation while frames stream through the detector."""

    detections: list[FrameFaces] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)       # (width, height) of decoded, upright frames
    error: Exception | None = None
    n_sampled: int = 0                          # frames decoded so far
    n_detected: int = 0                         # frames that went through the full MTCNN (keyframes, fallbacks)
    n_tracked: int = 0                          # frames tracked by O-Net around the keyframe's faces
    key_windows: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # O-Net's, detection px
    key_thumb: torch.Tensor | None = None
    # rider name -> {(frame index, detection index): that face's row}, for the riders this clip asked for
    rides: dict[str, dict[tuple[int, int], torch.Tensor]] = field(default_factory=dict)


@dataclass
class _Pending:
    """One sampled frame waiting for the detector: its video, index in that video, detection-size frame, scale,
    and the decoded frame itself while a rider needs it."""

    video: int
    index: int
    frame: torch.Tensor
    scale: float
    full: torch.Tensor | None = None


def _merge_faces(faces: FrameFaces, extra: FrameFaces, min_prob: float, iou_threshold: float) -> FrameFaces:
    """`faces` plus the confident faces of `extra` that overlap none of its confident ones (an extra face replaces
    a less confident detection of the same face), largest first."""
    keep = np.nonzero(extra.probs >= min_prob)[0]
    confident = np.nonzero(faces.probs >= min_prob)[0]
    if len(confident) and len(keep):
        keep = keep[box_iou(extra.boxes[keep], faces.boxes[confident]).max(axis=1) < iou_threshold]
    if not len(keep):
        return faces
    base = np.arange(len(faces))
    if len(faces):
        base = base[(faces.probs >= min_prob) | (box_iou(faces.boxes, extra.boxes[keep]).max(axis=1) < iou_threshold)]
    windows = [w if w is not None else np.zeros((len(f), 4), np.float32)
               for f, w in ((faces, faces.onet_boxes), (extra, extra.onet_boxes))]
    boxes = np.concatenate([faces.boxes[base], extra.boxes[keep]])
    order = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]
    return FrameFaces(boxes[order], np.concatenate([faces.probs[base], extra.probs[keep]])[order],
                      np.concatenate([faces.landmarks[base], extra.landmarks[keep]])[order],
                      np.concatenate([windows[0][base], windows[1][keep]])[order])


def _thumbnail(frame: torch.Tensor, side: int = 16, samples: int = 4) -> torch.Tensor:
    """A side x side grey summary of a uint8 (H,W,3) frame in [0,1], for scene-cut checks (from a grid of about
    (side * samples)^2 pixels, so it costs the same for any frame size)."""
    h, w = frame.shape[:2]
    n = side * samples
    grid = frame[:: max(1, h // n), :: max(1, w // n)]
    grey = grid.float().mean(dim=2)[None, None] / 255.0
    return F.adaptive_avg_pool2d(grey, side)[0, 0]


def _change(thumb: torch.Tensor | None, frame: torch.Tensor) -> float:
    """Mean absolute grey-level change (0-1) between a keyframe's thumbnail and a frame."""
    if thumb is None:
        return float("inf")
    return float((_thumbnail(frame, thumb.shape[0]) - thumb).abs().mean())


def speaker_rows(rows: dict[tuple[int, int], torch.Tensor], dets: np.ndarray) -> torch.Tensor | None:
    """A rider's rows (T, F) of the speaker's face per frame (`dets`: its detection index, -1 = absent: zeros),
    or None if a frame of the track has no row (then the rider computes its own)."""
    if not rows:
        return None
    width = next(iter(rows.values())).shape[-1]
    out = torch.zeros((len(dets), width))
    for t, d in enumerate(dets):
        if d < 0:
            continue
        row = rows.get((t, int(d)))
        if row is None:
            return None
        out[t] = row
    return out


class FaceExtractor(Extractor):
    """Per sampled frame: the speaker's tracked face box, 5 landmarks, probability and geometry descriptors."""

    name = "face"
    version = "2"
    modality = "visual"
    Config = FaceConfig
    requires = frozenset({"video"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c: FaceConfig = self.config
        if c.fit not in ("pool", "truncate"):
            raise ConfigError(f"extraction.options.face.fit must be 'pool' or 'truncate', got {c.fit!r}")
        if len(c.thresholds) != 3:
            raise ConfigError(f"extraction.options.face.thresholds needs 3 values (P-, R-, O-Net), got {c.thresholds}")
        if not 0.0 <= c.min_face_fraction < 1.0:
            raise ConfigError(f"extraction.options.face.min_face_fraction must be in [0, 1), got {c.min_face_fraction}")
        if c.scene_cut < 0:
            raise ConfigError(f"extraction.options.face.scene_cut must be >= 0 (0: full detection on every frame), "
                              f"got {c.scene_cut}")
        if c.detect_fps is not None and c.detect_fps <= 0:
            raise ConfigError(f"extraction.options.face.detect_fps must be > 0 or null (every frame), got {c.detect_fps}")
        self.detector = FaceDetector(self.device, c.min_face_size, c.thresholds, c.pyramid_factor,
                                     c.detect_batch_size, c.min_face_fraction)   # MTCNN weights load on first use
        self.riders: list[FaceRider] = []

    def attach_rider(self, rider: Any) -> None:
        """Compute `rider.per_face` for every confident face during detection, for the clips that ask for it
        (`item.extras["ride"]` names the riders; the speaker's rows land in `item.extras["rode"][name]`)."""
        if not callable(getattr(rider, "per_face", None)):
            raise TypeError(f"{rider.name} has no per_face(frames, frame_of, boxes, landmarks): it cannot ride on face")
        self.riders.append(rider)

    def media_settings(self) -> dict:
        return {"video_fps": self.media.video_fps, "max_frame_side": self.media.max_frame_side}

    def keyframe_step(self) -> int:
        """Full MTCNN runs on every n-th sampled frame (1: every frame, the per-frame path)."""
        c: FaceConfig = self.config
        if c.detect_fps is None or c.detect_fps >= self.media.video_fps:
            return 1
        return max(1, int(round(self.media.video_fps / c.detect_fps)))

    def detect_videos(self, paths: Sequence[str], rides: Sequence[Sequence[str]] = ()) -> list[_VideoState]:
        """Faces in every sampled frame of each video: full MTCNN on keyframes, O-Net tracking in between.

        Frames of several videos share each MTCNN / O-Net call. A frame between keyframes is re-detected in full
        when its keyframe had no confident face, when O-Net loses one of the keyframe's faces, or after a scene cut.
        `rides[i]` names the attached riders that compute their rows for video i's confident faces on the way.
        """
        c: FaceConfig = self.config
        step = self.keyframe_step()
        states = [_VideoState() for _ in paths]
        known = {r.name for r in self.riders}
        for state, names in zip(states, rides):
            state.rides = {n: {} for n in names if n in known}
        pending: list[_Pending] = []

        def flush() -> None:
            self._detect_pending(pending, states, step)
            pending.clear()

        for i, frames, times, err in round_robin_chunks(paths, self.media):
            if err is not None:
                states[i].error = err
                continue
            states[i].frame_size = (int(frames.shape[2]), int(frames.shape[1]))
            decoded = torch.from_numpy(frames)
            small, scale = resize_for_detection(decoded, c.detect_max_side)
            states[i].times.append(times)
            for j, f in enumerate(small):
                pending.append(_Pending(i, states[i].n_sampled, f, scale, decoded[j] if states[i].rides else None))
                states[i].n_sampled += 1
            if len(pending) >= c.detect_batch_size:
                flush()
        if pending:
            flush()
        return states

    def _detect_pending(self, pending: list[_Pending], states: list[_VideoState], step: int) -> None:
        """Detect (keyframes, lost tracks, scene cuts) or track (O-Net near the keyframe's faces) pending frames."""
        c: FaceConfig = self.config
        found: list[FrameFaces | None] = [None] * len(pending)
        keys = [k for k, p in enumerate(pending) if p.index % step == 0]
        for k, faces in zip(keys, self.detector.detect([pending[k].frame for k in keys])):
            found[k] = faces
        if step > 1:                                    # step 1 is the plain per-frame path (version 1)
            self._rescue_keyframes(pending, states, keys, found)
        tracked: list[tuple[int, np.ndarray]] = []      # (pending index, keyframe's O-Net windows to look in)
        full: list[int] = []
        for k, p in enumerate(pending):
            state = states[p.video]
            if found[k] is not None:                    # a keyframe: the reference for the frames after it
                faces = found[k]
                state.key_windows = (faces.onet_boxes[faces.probs >= c.min_prob] if faces.onet_boxes is not None
                                     else np.zeros((0, 4), np.float32))
                state.key_thumb = _thumbnail(p.frame)
                state.n_detected += 1
            elif len(state.key_windows) and _change(state.key_thumb, p.frame) < c.scene_cut:
                tracked.append((k, state.key_windows))
            else:
                full.append(k)
        refined = self.detector.refine([pending[k].frame for k, _ in tracked], [b for _, b in tracked])
        for (k, ref), faces in zip(tracked, refined):
            if int((faces.probs >= c.min_prob).sum()) < len(ref):
                full.append(k)                          # a face was lost: look again with the full detector
            else:
                found[k] = faces
                states[pending[k].video].n_tracked += 1
        full.sort()
        for k, faces in zip(full, self.detector.detect([pending[k].frame for k in full])):
            found[k] = faces
            states[pending[k].video].n_detected += 1
        scaled = [FrameFaces(f.boxes / p.scale, f.probs, f.landmarks / p.scale) if len(f) else f
                  for p, f in zip(pending, found)]
        for rider in self.riders:
            self._ride(rider, pending, scaled, states)
        for p, faces in zip(pending, scaled):
            states[p.video].detections.append(faces)

    def _ride(self, rider: FaceRider, pending: list[_Pending], faces: list[FrameFaces],
              states: list[_VideoState]) -> None:
        """`rider`'s rows for the confident faces of the pending frames of the videos that asked for it."""
        c: FaceConfig = self.config
        frames: list[torch.Tensor] = []
        frame_of: list[int] = []
        where: list[tuple[int, int]] = []               # (pending index, detection index) per face
        for k, p in enumerate(pending):
            if p.full is None or rider.name not in states[p.video].rides:
                continue
            dets = np.nonzero(faces[k].probs >= c.min_prob)[0] if len(faces[k]) else []
            if len(dets):
                frames.append(p.full)
                frame_of.extend([len(frames) - 1] * len(dets))
                where.extend((k, int(d)) for d in dets)
        if not where:
            return
        boxes = np.stack([faces[k].boxes[d] for k, d in where])
        landmarks = np.stack([faces[k].landmarks[d] for k, d in where])
        # the geometry as cached (fractions of the frame, float32) and read back, so a rider computing from the
        # cache instead sees the same numbers
        size = np.array([states[pending[k].video].frame_size for k, _ in where], np.float32)   # (K,2) w,h
        boxes, landmarks = from_frame_units(*to_frame_units(boxes, landmarks, size), size)
        with stages.timed(rider.name):         # also inside face's seconds, as its decoding is
            rows = rider.per_face(frames, np.asarray(frame_of), boxes, landmarks)
        for (k, d), row in zip(where, rows):
            states[pending[k].video].rides[rider.name][(pending[k].index, d)] = row

    def _rescue_keyframes(self, pending: list[_Pending], states: list[_VideoState], keys: list[int],
                          found: list[FrameFaces | None]) -> None:
        """A keyframe where the full MTCNN misses a face the previous keyframe had (the pyramid is sensitive to
        scale) gets O-Net in that face's window too, as a tracked frame would."""
        c: FaceConfig = self.config
        previous = {i: s.key_windows for i, s in enumerate(states)}
        jobs: list[tuple[int, np.ndarray]] = []
        for k in keys:
            faces, video = found[k], pending[k].video
            confident = faces.probs >= c.min_prob
            if int(confident.sum()) < len(previous[video]):
                jobs.append((k, previous[video]))
            previous[video] = faces.onet_boxes[confident] if faces.onet_boxes is not None else previous[video][:0]
        if not jobs:
            return
        rescued = self.detector.refine([pending[k].frame for k, _ in jobs], [w for _, w in jobs])
        for (k, _), extra in zip(jobs, rescued):
            found[k] = _merge_faces(found[k], extra, c.min_prob, c.track_iou)

    def track(self, state: _VideoState) -> SpeakerTrack:
        """The speaker's face through one clip's detections."""
        c: FaceConfig = self.config
        w, h = state.frame_size
        return select_speaker(state.detections, float(w * h), c.min_prob, c.track_iou,
                              max(0, int(round(c.max_gap_seconds * self.media.video_fps))))

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: FaceConfig = self.config
        states = self.detect_videos([item.path for item in batch], [item.extras.get("ride", ()) for item in batch])
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
            for name, rows in state.rides.items():
                speaker = speaker_rows(rows, track.dets)
                if speaker is not None:
                    item.extras.setdefault("rode", {})[name] = speaker
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
        boxes, landmarks = to_frame_units(track.boxes, track.landmarks, (w, h))
        tensors["boxes"] = torch.from_numpy(boxes)                  # (T,4) in [0,1] frame units
        tensors["landmarks"] = torch.from_numpy(landmarks)          # (T,5,2)
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
            "n_detected_frames": state.n_detected, "n_tracked_frames": state.n_tracked,
            "keyframe_step": self.keyframe_step(),
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
            boxes, lms = from_frame_units(feats.tensors["boxes"][sl].numpy(), feats.tensors["landmarks"][sl].numpy(),
                                          (w, h))
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
