"""Per-frame face geometry from MTCNN's box and 5 landmarks: position, size, landmark layout, head pose, motion."""

from __future__ import annotations

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")   # MTCNN's order (image left first)

GEOMETRY_FEATURES: tuple[str, ...] = (
    ("box_cx", "box_cy", "box_w", "box_h", "box_size")
    + tuple(f"{n}_{a}" for n in LANDMARK_NAMES for a in ("x", "y"))
    + ("roll", "yaw_proxy", "pitch_proxy", "motion_x", "motion_y", "motion_scale", "detection_prob")
)
"""Names of the descriptor columns: box in frame units, landmarks in box units, pose proxies, motion per second."""


def _frame_divisors(size: np.ndarray | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """float32 divisors of boxes (w, h, w, h) and landmarks (w, h) for one frame size (2,) or one per row (K,2)."""
    wh = np.asarray(size, np.float32)
    return np.tile(wh, 2), (wh if wh.ndim == 1 else wh[:, None])


def to_frame_units(boxes: np.ndarray, landmarks: np.ndarray,
                   size: np.ndarray | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel boxes (K,4) and landmarks (K,5,2) -> fractions of the frame's width and height, as the face entry
    stores them (float32)."""
    box_div, lm_div = _frame_divisors(size)
    return boxes.astype(np.float32) / box_div, landmarks.astype(np.float32) / lm_div


def from_frame_units(boxes: np.ndarray, landmarks: np.ndarray,
                     size: np.ndarray | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and landmarks in frame units (as stored) -> pixels of a frame of `size`, the numbers every reader of
    the face entry computes from (fer's crops, face's own crops, and fer riding on face's pass)."""
    box_div, lm_div = _frame_divisors(size)
    return boxes * box_div, landmarks * lm_div


def face_geometry(boxes: np.ndarray, landmarks: np.ndarray, probs: np.ndarray, present: np.ndarray,
                  frame_size: tuple[int, int], fps: float) -> np.ndarray:
    """Descriptors (T, len(GEOMETRY_FEATURES)) for the tracked face; zero rows where no face is present.

    boxes (T,4) and landmarks (T,5,2) are in pixels of a frame of `frame_size` (width, height).
    roll: eye-line angle (radians, positive = clockwise in the image); yaw_proxy: nose offset from the eye midpoint
    in inter-ocular distances; pitch_proxy: nose height between eye and mouth midpoints (0 eyes, 1 mouth);
    motion: box-centre velocity in box widths per second and log-size change per second, against the previous
    frame with a face (0 for the first).
    """
    w_frame, h_frame = float(frame_size[0]), float(frame_size[1])
    t = len(boxes)
    out = np.zeros((t, len(GEOMETRY_FEATURES)), np.float32)
    if t == 0:
        return out
    bw = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    bh = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    cols = [cx / w_frame, cy / h_frame, bw / w_frame, bh / h_frame, np.sqrt(bw * bh / (w_frame * h_frame))]
    for k in range(5):
        cols.append((landmarks[:, k, 0] - boxes[:, 0]) / bw)
        cols.append((landmarks[:, k, 1] - boxes[:, 1]) / bh)
    eye_l, eye_r, nose = landmarks[:, 0], landmarks[:, 1], landmarks[:, 2]
    eye_mid = (eye_l + eye_r) / 2
    mouth_mid = (landmarks[:, 3] + landmarks[:, 4]) / 2
    eye_vec = eye_r - eye_l
    interocular = np.maximum(np.linalg.norm(eye_vec, axis=1), 1e-6)
    roll = np.arctan2(eye_vec[:, 1], eye_vec[:, 0])
    # project the nose offset on the eye line (yaw) and on its normal towards the mouth (pitch)
    unit = eye_vec / interocular[:, None]
    normal = np.stack([-unit[:, 1], unit[:, 0]], axis=1)
    nose_off = nose - eye_mid
    yaw = (nose_off * unit).sum(1) / interocular
    mouth_depth = np.maximum(((mouth_mid - eye_mid) * normal).sum(1), 1e-6)
    pitch = (nose_off * normal).sum(1) / mouth_depth
    cols += [roll, yaw, pitch]
    motion = np.zeros((t, 3), np.float32)
    prev = None
    for i in np.nonzero(present)[0]:
        if prev is not None:
            dt = max((i - prev) / fps, 1e-6)
            motion[i, 0] = (cx[i] - cx[prev]) / bw[prev] / dt
            motion[i, 1] = (cy[i] - cy[prev]) / bw[prev] / dt
            motion[i, 2] = np.log(np.sqrt(bw[i] * bh[i]) / np.sqrt(bw[prev] * bh[prev])) / dt
        prev = i
    cols += [motion[:, 0], motion[:, 1], motion[:, 2], probs]
    out[:] = np.stack(cols, axis=1).astype(np.float32)
    out[~present.astype(bool)] = 0.0
    return out
