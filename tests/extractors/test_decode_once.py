"""One decode per video for face and fer: fer's crops and classification ride on face's pass, and give the same
features, tensor for tensor, as fer decoding the frames again from face's cached boxes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import extractors.visual.frames as frames_module
from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from extractors.visual.crops import crop_each_face, crop_faces, crop_geometry
from extractors.visual.face import speaker_rows
from pipeline.cache import FeatureCache

# 224 px with one face, 596x336 without audio (different frame sizes in one batch), 524 px
REAL_CLIPS = ("Pose_Source_620900105.mp4", "fer_test.mp4", "videoretalking_face_5.mp4")


def test_a_crop_depends_only_on_its_own_frame_and_face() -> None:
    """Faces of different sizes (so different downscale factors) and frames of different sizes cut together give
    the pixels each gets alone; crop_faces with one factor for the batch does not."""
    g = torch.Generator().manual_seed(0)
    big = torch.randint(0, 256, (2, 720, 1280, 3), dtype=torch.uint8, generator=g)
    small = torch.randint(0, 256, (1, 240, 320, 3), dtype=torch.uint8, generator=g)
    frames = [big[0], big[1], small[0]]
    boxes = np.array([[100, 100, 700, 700], [500, 200, 620, 320], [40, 40, 200, 200]], np.float32)  # 600/120/160 px
    landmarks = np.tile(np.array([[0.3, 0.4], [0.7, 0.42], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32),
                        (3, 1, 1)) * 100 + boxes[:, None, :2]
    centres, sides, angles = crop_geometry(boxes, landmarks, 0.1, True)
    together = crop_each_face(frames, np.array([0, 1, 2]), centres, sides, angles, 128)
    assert together.shape == (3, 128, 128, 3) and together.dtype == torch.uint8
    for k in range(3):
        alone = crop_each_face(frames, np.array([k]), centres[k:k + 1], sides[k:k + 1], angles[k:k + 1], 128)
        assert torch.equal(together[k], alone[0]), k
    batch_factor = crop_faces(big, centres[:2], sides[:2], angles[:2], 128)     # median side 540 -> factor 4
    assert not torch.equal(batch_factor[1], together[1])                         # 158 px side -> factor 1


def test_speaker_rows_pick_the_tracked_detection_and_zero_the_rest() -> None:
    rows = {(0, 0): torch.tensor([1.0, 2.0]), (0, 1): torch.tensor([3.0, 4.0]), (2, 1): torch.tensor([5.0, 6.0])}
    out = speaker_rows(rows, np.array([1, -1, 1]))
    assert torch.equal(out, torch.tensor([[3.0, 4.0], [0.0, 0.0], [5.0, 6.0]]))
    assert speaker_rows(rows, np.array([1, -1, 0])) is None     # a tracked face without a row: the rider decodes
    assert speaker_rows({}, np.array([0])) is None


@pytest.mark.shared
def test_fer_riding_on_face_decodes_once_and_gives_the_same_features(shared_clips: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in REAL_CLIPS:
        shutil.copy(shared_clips / name, clips / name)
    opened: list[str] = []
    real_iter_frames = frames_module.iter_frames

    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_iter_frames(path, *args, **kwargs)

    monkeypatch.setattr(frames_module, "iter_frames", counting)
    entries, decodes = {}, {}
    for once in (True, False):
        cfg = SentiFlowConfig()
        cfg.extraction.extractors, cfg.extraction.isolate, cfg.extraction.decode_once = ["face", "fer"], False, once
        opened.clear()
        summary = ExtractionRunner(cfg, FeatureCache(tmp_path / f"cache_{once}")).run([clips], progress=False)
        assert all(o.extractors == {"face": "done", "fer": "done"} for o in summary.items), summary.items
        decodes[once] = sorted(opened)
        entries[once] = {e.key: (e.meta["extractor"], e.load()) for e in FeatureCache(tmp_path / f"cache_{once}",
                                                                                      create=False).entries()}
    assert decodes[True] == sorted(REAL_CLIPS)               # each video decoded once, by face
    assert decodes[False] == sorted(REAL_CLIPS * 2)          # ... and again by fer
    assert set(entries[True]) == set(entries[False])         # the same cache keys: the same features
    for key, (name, tensors) in entries[True].items():
        other = entries[False][key][1]
        assert set(tensors) == set(other)
        for t in tensors:
            assert torch.equal(tensors[t], other[t]), (name, t)
    fer = [t for name, t in entries[True].values() if name == "fer"]
    assert len(fer) == len(REAL_CLIPS) and all(float(t["probs"].sum(1).max()) == pytest.approx(1.0) for t in fer)

    # face cached, fer asked for again with another setting: fer decodes by itself from the cached boxes
    cfg = SentiFlowConfig()
    cfg.extraction.extractors, cfg.extraction.isolate = ["face", "fer"], False
    cfg.extraction.options = {"fer": {"output": "probs"}}
    opened.clear()
    summary = ExtractionRunner(cfg, FeatureCache(tmp_path / "cache_True")).run([clips], progress=False)
    assert all(o.extractors == {"face": "cached", "fer": "done"} for o in summary.items)
    assert sorted(opened) == sorted(REAL_CLIPS)
