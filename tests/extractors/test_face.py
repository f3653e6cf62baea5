"""Visual path: batched MTCNN, speaker tracking, geometry, crops and the face/fer extractors on real and bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.base import Features, MediaItem
from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from extractors.visual.detect import FaceDetector, FrameFaces, resize_for_detection
from extractors.visual.face import FaceConfig, FaceExtractor
from extractors.visual.geometry import GEOMETRY_FEATURES, face_geometry
from extractors.visual.sequence import masked_sequence_features
from extractors.visual.track import select_speaker
from pipeline.cache import FeatureCache
from pipeline.media import MediaConfig, iter_frames, probe
from tests.helpers.media_factory import write_video
from tests.helpers.paths import SHARED_CLIPS, shared_clips_or_skip

TALKING = "Pose_Source_620900105.mp4"        # 224x224 VoxCeleb2 talking head, 4.4 s


def _item(path: Path) -> MediaItem:
    return MediaItem(str(path), "test", probe(path))


# ---------------------------------------------------------------------------------------------- unit level

def test_geometry_recovers_roll_yaw_and_motion() -> None:
    """Landmarks of a known rotated, shifted face give that roll, zero yaw for a centred nose, and the motion."""
    base = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
    angle = np.deg2rad(15.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    lm0 = (base - 50) @ rot.T + 50
    lm1 = lm0 + np.array([10, 0], np.float32)              # moves right by 10 px in 1/8 s
    lm1[2, 0] += 8                                         # nose turns right: positive yaw
    boxes = np.array([[10, 10, 90, 100], [20, 10, 100, 100], [0, 0, 0, 0]], np.float32)
    landmarks = np.stack([lm0, lm1, np.zeros_like(lm0)])
    present = np.array([True, True, False])
    g = face_geometry(boxes, landmarks, np.array([0.99, 0.98, 0], np.float32), present, (200, 100), fps=8.0)
    col = {n: i for i, n in enumerate(GEOMETRY_FEATURES)}
    assert g.shape == (3, len(GEOMETRY_FEATURES))
    assert g[0, col["roll"]] == pytest.approx(angle, abs=1e-4)
    assert g[0, col["yaw_proxy"]] == pytest.approx(0.0, abs=1e-4)
    assert g[1, col["yaw_proxy"]] > 0.15
    assert 0.3 < g[0, col["pitch_proxy"]] < 0.7                # nose between eyes and mouth
    assert g[1, col["motion_x"]] == pytest.approx(10 / 80 * 8, rel=1e-4)   # box widths per second
    assert g[0, col["box_cx"]] == pytest.approx(0.25) and g[0, col["box_w"]] == pytest.approx(0.4)
    assert not g[2].any()                                      # no face -> zero vector


def test_masked_pooling_ignores_faceless_frames() -> None:
    x = torch.ones(8, 2)
    x[4:] = 0.0
    present = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.float32)
    out = masked_sequence_features(x, torch.arange(8) / 8.0, present, 4, "pool")
    assert out["fixed"].tolist() == [[1, 1], [1, 1], [0, 0], [0, 0]]
    assert out["mask"].tolist() == [1, 1, 0, 0]
    short = masked_sequence_features(x[:3], torch.arange(3) / 8.0, torch.tensor([1.0, 0.0, 1.0]), 5, "pool")
    assert short["mask"].tolist() == [1, 0, 1, 0, 0] and int(short["length"]) == 3


def test_tracker_prefers_steady_face_over_intermittent_larger_one() -> None:
    """A steady face present throughout beats a bigger face that pops in and out; per-frame-largest would switch."""
    small = np.array([[100, 100, 160, 170]], np.float32)
    big = np.array([[400, 50, 500, 170]], np.float32)
    dets = []
    for t in range(24):
        boxes = [small[0] + t % 2]                           # 1 px jitter
        if t % 8 in (2, 3, 4):
            boxes.insert(0, big[0] + 40 * (t // 8))        # appears elsewhere each time
        b = np.stack(boxes)
        dets.append(FrameFaces(b, np.full(len(b), 0.99, np.float32), np.zeros((len(b), 5, 2), np.float32)))
    track = select_speaker(dets, frame_area=640 * 360.0, max_gap=8)
    assert track.present.all()
    assert (track.boxes[:, 0] < 200).all()
    assert track.n_tracks >= 3 and track.n_multi_face_frames == 9


# ---------------------------------------------------------------------------------------------- real clips

@pytest.mark.shared
def test_batched_detection_equals_per_frame_on_real_clips() -> None:
    """One batched call over frames of three clips of different sizes == stock per-frame MTCNN, within 1 px."""
    clips = shared_clips_or_skip()
    frames = []
    for name in (TALKING, "fer_test.mp4", "sadtalker_RD_Radio34_000.mp4"):
        f, _ = next(iter_frames(clips / name, 2.0, 1280, 3))
        small, _ = resize_for_detection(torch.from_numpy(f), 640)
        frames += list(small.numpy())
    assert len({f.shape for f in frames}) == 3
    det = FaceDetector(batch_size=64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # same maths; the stock per-frame call is 10x slower with 2 threads on 2 busy cores
    try:
        _compare_batched_with_stock(det, frames)
    finally:
        torch.set_num_threads(threads)


def _compare_batched_with_stock(det: FaceDetector, frames: list[np.ndarray]) -> None:
    batched = det.detect(frames)
    for frame, got in zip(frames, batched):
        ref = det.detect_one(frame)                          # facenet-pytorch's own MTCNN.detect, one frame
        assert len(ref) == len(got) >= 1
        assert np.abs(ref.boxes - got.boxes).max() <= 1.0
        assert np.abs(ref.landmarks - got.landmarks).max() <= 1.0
        assert np.abs(ref.probs - got.probs).max() < 1e-4


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, FeatureCache]:
    """One `ExtractionRunner` run of logmel + face + fer over a talking head, the no-audio clip (also a talking
    head) and a generated clip without a face (with audio)."""
    clips = shared_clips_or_skip()
    d = tmp_path_factory.mktemp("visual")
    grad = [np.broadcast_to(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (120, 160, 3)).copy()
            for _ in range(12)]
    noface = write_video(d / "noface.mp4", [np.roll(g, 4 * i, axis=1) for i, g in enumerate(grad)], audio=True)
    cache = FeatureCache(d / "cache")
    config = SentiFlowConfig()
    config.extraction.extractors = ["logmel", "face", "fer"]
    config.extraction.isolate = False   # in-process, so the thread setting below applies (CLI path: isolated child)
    paths = [clips / TALKING, clips / "fer_test.mp4", noface]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # many tiny ops: one thread is several times faster on a busy 2-core CI box
    try:
        summary = ExtractionRunner(config, cache).run(paths, progress=False)
    finally:
        torch.set_num_threads(threads)
    return {Path(o.path).name: o for o in summary.items}, cache


@pytest.mark.shared
def test_talking_heads_tracked_in_95_percent_of_frames(extracted) -> None:
    outcomes, cache = extracted
    for name in (TALKING, "fer_test.mp4"):
        o = outcomes[name]
        assert o.extractors["face"] == "done", o.extractors
        entry = cache.get(o.keys["face"])
        t = entry.load()
        assert entry.meta["coverage"] >= 0.95
        n = entry.meta["n_frames"]
        assert n == pytest.approx(probe(SHARED_CLIPS / name).duration * 8, abs=2)
        assert t["sequence"].shape == (n, len(GEOMETRY_FEATURES)) and t["fixed"].shape == (64, 22)
        assert t["boxes"].shape == (n, 4) and t["landmarks"].shape == (n, 5, 2)
        assert ((t["boxes"][:, 2] > t["boxes"][:, 0]) & (t["boxes"][:, 2] <= 1.2)).all()
        assert entry.meta["feature_names"] == list(GEOMETRY_FEATURES)


@pytest.mark.shared
def test_fer_features_per_frame(extracted) -> None:
    outcomes, cache = extracted
    o = outcomes["fer_test.mp4"]                             # no audio track: still gets visual features
    assert o.extractors["fer"] == "done" and o.extractors["logmel"].startswith("missing")
    entry = cache.get(o.keys["fer"])
    t = entry.load()
    n = entry.meta["n_frames"]
    assert entry.meta["embedding_dim"] == 128 and entry.meta["dim"] == 7 + 128
    assert t["probs"].shape == (n, 7) and t["embedding"].shape == (n, 128)
    present = t["face_present"] > 0
    assert torch.allclose(t["probs"][present].sum(1), torch.ones(int(present.sum())), atol=1e-4)
    assert not t["probs"][~present].any()
    assert t["fixed"].shape == (64, 135) and t["mask"].sum() >= 0.95 * min(n, 64)
    # expressions change over a real clip
    assert float(t["probs"][present].std(0).max()) > 0.01


@pytest.mark.shared
def test_clip_without_face_is_recorded_and_keeps_audio(extracted) -> None:
    outcomes, cache = extracted
    o = outcomes["noface.mp4"]
    assert o.extractors["logmel"] == "done"
    assert o.extractors["face"] == "missing: no face detected in 12 sampled frames"
    assert o.extractors["fer"].startswith("missing: no face detected")
    assert cache.get(o.keys["face"]).status == "missing"


# ---------------------------------------------------------------------------------------------- bad video

def _face_frames(n: int) -> list[np.ndarray]:
    clips = shared_clips_or_skip()
    frames, _ = next(iter_frames(clips / TALKING, 8.0, 1280, n))
    return list(frames)


@pytest.mark.shared
def test_rotated_phone_video_is_upright_and_tracked(tmp_path: Path) -> None:
    """Frames stored rotated 90 degrees with a display matrix asking to rotate back come out upright."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("needs the ffmpeg CLI to write rotation metadata")
    upright = _face_frames(12)
    raw = write_video(tmp_path / "raw.mp4", [np.rot90(f, k=-1) for f in upright])   # stored turned clockwise
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(raw), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)
    assert probe(rotated).rotation in (90, 270)
    decoded, _ = next(iter_frames(rotated, 8.0, 1280, 12))
    assert decoded.shape[1:3] == upright[0].shape[:2]
    err_upright = np.abs(decoded[0].astype(int) - upright[0]).mean()
    err_turned = min(np.abs(np.rot90(decoded[0], k).astype(int) - upright[0]).mean() for k in (1, 2, 3))
    assert err_upright < 6 < err_turned
    res = FaceExtractor().extract([_item(rotated)])[0]
    assert isinstance(res, Features) and res.meta["coverage"] >= 0.95
    roll = res.tensors["sequence"][:, GEOMETRY_FEATURES.index("roll")]
    assert float(roll.abs().max()) < np.deg2rad(30)          # eyes level: the face is upright


@pytest.mark.shared
def test_grayscale_tiny_video(tmp_path: Path) -> None:
    import cv2

    grey = [np.repeat(cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (160, 160))[:, :, None], 3, axis=2)
            for f in _face_frames(12)]
    path = write_video(tmp_path / "grey160.mp4", grey, pix_fmt="gray")
    assert probe(path).width == 160
    res = FaceExtractor().extract([_item(path)])[0]
    assert isinstance(res, Features)
    assert res.meta["frame_size"] == [160, 160] and res.meta["coverage"] >= 0.9


@pytest.mark.shared
def test_two_people_tracks_the_steady_face(tmp_path: Path) -> None:
    """Two copies of a real face: a steady small one and a larger one popping in and out at new places."""
    import cv2

    faces = _face_frames(16)
    frames = []
    for t, f in enumerate(faces):
        canvas = np.full((360, 640, 3), 90, np.uint8)
        canvas[60:60 + 170, 40:40 + 170] = cv2.resize(f, (170, 170))
        if t % 8 in (2, 3, 4):
            x0 = 300 + 60 * (t // 8)
            canvas[40:40 + 260, x0:x0 + 260] = cv2.resize(f, (260, 260))
        frames.append(canvas)
    path = write_video(tmp_path / "two.mp4", frames)
    ext = FaceExtractor(FaceConfig(detect_fps=None))   # full MTCNN on every frame: the tracker sees every pop-in
    state = ext.detect_videos([str(path)])[0]
    track = ext.track(state)
    assert track.coverage >= 0.9 and track.n_multi_face_frames >= 5
    cx = (track.boxes[:, 0] + track.boxes[:, 2]) / 2 / 640
    assert (cx[track.present] < 0.4).all()                   # always the left (steady) face
    # the naive choice would have jumped: the largest face per frame is the right one when it is there
    largest_cx = [(f.boxes[0, 0] + f.boxes[0, 2]) / 2 / 640 for f in state.detections if len(f)]
    assert sum(c > 0.4 for c in largest_cx) >= 5


@pytest.mark.shared
def test_4k_video_is_resized_before_detection(tmp_path: Path) -> None:
    import cv2

    big = [cv2.resize(f, (2160, 2160)) for f in _face_frames(4)]
    frames = [np.pad(b, ((0, 0), (840, 840), (0, 0))) for b in big]     # 3840 x 2160
    path = write_video(tmp_path / "uhd.mp4", frames)
    assert probe(path).width == 3840
    media = MediaConfig()
    res = FaceExtractor(FaceConfig(save_crops=True), media=media).extract([_item(path)])[0]
    assert isinstance(res, Features)
    assert max(res.meta["frame_size"]) == media.max_frame_side
    assert res.meta["coverage"] == 1.0
    assert res.tensors["crops"].shape == (4, 128, 128, 3) and res.tensors["crops"].dtype == torch.uint8
    assert float(res.tensors["crops"].float().std()) > 10


@pytest.mark.shared
@pytest.mark.slow
def test_street_scene_is_handled() -> None:
    clips = shared_clips_or_skip()
    # faces of 4-6% of the frame height: below the talking-head default min_face_fraction (10%)
    res = FaceExtractor(FaceConfig(min_face_fraction=0.0)).extract([_item(clips / "facenet_video.mp4")])[0]
    assert isinstance(res, Features)
    assert res.meta["multi_face_frames"] > 0 and res.meta["n_tracks"] > 1
    assert 0.3 < res.meta["coverage"] <= 1.0


def test_no_video_stream_is_missing(tmp_path: Path) -> None:
    from tests.helpers.media_factory import make_clip

    wav = make_clip(tmp_path / "a.wav", seconds=0.5, video=False)
    assert FaceExtractor().missing_reason(_item(wav)) == "no video stream"


def test_construction_is_cheap() -> None:
    ext = FaceExtractor()
    assert ext.detector._mtcnn is None
    from extractors.visual.fer import FerExtractor

    assert FerExtractor()._model is None


def test_frame_units_round_trip_is_the_one_every_reader_uses() -> None:
    from extractors.visual.geometry import from_frame_units, to_frame_units

    boxes = np.array([[10.3, 20.7, 110.1, 140.9], [1.0, 2.0, 33.3, 44.4]], np.float32)
    lms = np.random.default_rng(0).uniform(0, 100, (2, 5, 2)).astype(np.float32)
    fb, fl = to_frame_units(boxes, lms, (640, 360))
    assert fb.dtype == fl.dtype == np.float32 and fb.shape == (2, 4) and fl.shape == (2, 5, 2)
    np.testing.assert_allclose(fb[0], [10.3 / 640, 20.7 / 360, 110.1 / 640, 140.9 / 360], rtol=1e-6)
    back_b, back_l = from_frame_units(fb, fl, (640, 360))
    np.testing.assert_allclose(back_b, boxes, rtol=1e-6)
    # one size per row (faces of frames of different sizes) gives each row what its own frame size gives
    sizes = np.array([[640, 360], [1920, 1080]], np.float32)
    rb, rl = from_frame_units(*to_frame_units(boxes, lms, sizes), sizes)
    one_b, one_l = from_frame_units(*to_frame_units(boxes[1:], lms[1:], (1920, 1080)), (1920, 1080))
    assert np.array_equal(rb[1:], one_b) and np.array_equal(rl[1:], one_l)
    assert np.array_equal(rb[:1], back_b[:1]) and np.array_equal(rl[:1], back_l[:1])
