"""Speaker-face tracking: link detections across frames by box overlap, keep the largest and steadiest track."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from extractors.visual.detect import FrameFaces


@dataclass
class Track:
    """One face followed through the clip: frame indices and the detection index in each frame."""

    frames: list[int] = field(default_factory=list)
    dets: list[int] = field(default_factory=list)
    last_box: np.ndarray | None = None


@dataclass
class SpeakerTrack:
    """The selected face per frame: boxes (T,4) px, landmarks (T,5,2) px, probs (T,), present (T,) bool, and
    `dets` (T,): the index of the selected detection in each frame's FrameFaces (-1 where absent)."""

    boxes: np.ndarray
    landmarks: np.ndarray
    probs: np.ndarray
    present: np.ndarray
    score: float
    n_tracks: int
    n_multi_face_frames: int
    dets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def coverage(self) -> float:
        """Fraction of sampled frames in which the tracked face is present."""
        return float(self.present.mean()) if len(self.present) else 0.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a (N,4) and b (M,4), x1,y1,x2,y2."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def build_tracks(detections: list[FrameFaces], min_prob: float, iou_threshold: float, max_gap: int) -> list[Track]:
    """Greedy IoU tracking: each detection joins the best-overlapping track seen within `max_gap` frames."""
    tracks: list[Track] = []
    for t, faces in enumerate(detections):
        keep = np.nonzero(faces.probs >= min_prob)[0] if len(faces) else np.zeros(0, np.int64)
        active = [k for k, tr in enumerate(tracks) if t - tr.frames[-1] <= max_gap + 1]
        matched_dets: set[int] = set()
        if active and len(keep):
            iou = box_iou(np.stack([tracks[k].last_box for k in active]), faces.boxes[keep])
            pairs = sorted(((iou[a, d], a, d) for a in range(len(active)) for d in range(len(keep))
                            if iou[a, d] >= iou_threshold), reverse=True)
            used_tracks: set[int] = set()
            for _, a, d in pairs:
                if a in used_tracks or d in matched_dets:
                    continue
                tr = tracks[active[a]]
                tr.frames.append(t)
                tr.dets.append(int(keep[d]))
                tr.last_box = faces.boxes[keep[d]]
                used_tracks.add(a)
                matched_dets.add(d)
        for d in range(len(keep)):
            if d not in matched_dets:
                tracks.append(Track(frames=[t], dets=[int(keep[d])], last_box=faces.boxes[keep[d]]))
    return tracks


def track_score(track: Track, detections: list[FrameFaces], frame_area: float) -> float:
    """Largest and steadiest: sum over frames of prob * sqrt(relative area), times mean overlap of successive boxes."""
    boxes = np.stack([detections[t].boxes[d] for t, d in zip(track.frames, track.dets)])
    probs = np.array([detections[t].probs[d] for t, d in zip(track.frames, track.dets)])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    size = float((probs * np.sqrt(np.clip(areas, 0, None) / max(frame_area, 1.0))).sum())
    if len(boxes) < 2:
        return size * 0.5
    steadiness = float(np.mean([box_iou(boxes[k:k + 1], boxes[k + 1:k + 2])[0, 0] for k in range(len(boxes) - 1)]))
    return size * steadiness


def select_speaker(detections: list[FrameFaces], frame_area: float, min_prob: float = 0.9,
                   iou_threshold: float = 0.3, max_gap: int = 8) -> SpeakerTrack:
    """Follow one face through the clip: the best-scoring track; frames outside it are marked absent."""
    n = len(detections)
    boxes = np.zeros((n, 4), np.float32)
    landmarks = np.zeros((n, 5, 2), np.float32)
    probs = np.zeros(n, np.float32)
    present = np.zeros(n, bool)
    chosen = np.full(n, -1, np.int64)
    multi = int(sum(1 for f in detections if int((f.probs >= min_prob).sum()) > 1))
    tracks = build_tracks(detections, min_prob, iou_threshold, max_gap)
    if not tracks:
        return SpeakerTrack(boxes, landmarks, probs, present, 0.0, 0, multi, chosen)
    scores = [track_score(tr, detections, frame_area) for tr in tracks]
    best = tracks[int(np.argmax(scores))]
    for t, d in zip(best.frames, best.dets):
        boxes[t] = detections[t].boxes[d]
        landmarks[t] = detections[t].landmarks[d]
        probs[t] = detections[t].probs[d]
        present[t] = True
        chosen[t] = d
    return SpeakerTrack(boxes, landmarks, probs, present, float(max(scores)), len(tracks), multi, chosen)
