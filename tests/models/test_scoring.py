"""Scoring never reports a wrong score: corrupt cached features are recomputed, a non-finite output is a failure,
damaged weights or run records are clear errors, and every clip gets its own id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from models.checkpoint import CheckpointError
from models.run_dir import load_run, read_run_record
from models.scoring import clip_ids, score_media
from models.training import train_model
from pipeline.cache import FeatureCache
from tests.helpers.media_factory import make_clip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny log-mel model trained on four generated clips (MMSA layout): (run directory, media folder)."""
    d = tmp_path_factory.mktemp("scoring")
    rows = ["video_id,clip_id,text,label,mode"]
    (d / "v").mkdir()
    for i, label in enumerate((2.0, -2.0, 1.0, -1.0)):
        make_clip(d / "v" / f"{i}.mp4", seconds=1.0, tone_hz=180.0 + 60 * i)
        rows.append(f"v,{i},,{label},{'valid' if i == 3 else 'train'}")
    (d / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    opts = {"model": {"hidden": 8}, "train": {"epochs": 1, "batch_size": 2}}
    run = train_model(d / "cache", d / "labels.csv", "ef_lstm", d / "run", device="cpu", modalities=["audio"],
                      options=opts, extract_missing=True)
    return run, d


def test_corrupt_cached_features_are_recomputed_before_scoring(trained, tmp_path: Path) -> None:
    run, d = trained
    clip = d / "v" / "0.mp4"
    cache = FeatureCache(tmp_path / "c")
    first = score_media([clip], run, cache.root, device="cpu")
    key = ExtractionRunner(SentiFlowConfig.from_dict(read_run_record(run)["features"]), cache,
                           only=["logmel"]).run([clip], progress=False).items[0].keys["logmel"]
    f = cache.get(key).path / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-4000:-3000] = b"\xff" * 1000                 # NaN bytes in the cached log-mel
    f.write_bytes(bytes(data))
    again = score_media([clip], run, cache.root, device="cpu")
    assert again.loc[0, "status"] == "scored" and again.loc[0, "score"] == pytest.approx(first.loc[0, "score"])
    assert cache.get(key).problem(full_hash=True) is None


def test_a_non_finite_output_is_a_failure_not_a_score(trained, tmp_path: Path) -> None:
    run, d = trained
    clip = d / "v" / "1.mp4"
    cache = FeatureCache(tmp_path / "c")
    key = ExtractionRunner(SentiFlowConfig.from_dict(read_run_record(run)["features"]), cache,
                           only=["logmel"]).run([clip], progress=False).items[0].keys["logmel"]
    entry = cache.get(key)
    tensors = entry.load()
    tensors["fixed"][3, :] = float("nan")              # sound entry (checksums match), NaN inside: a broken extractor
    meta = {k: v for k, v in entry.meta.items() if k not in ("key", "status", "created", "tensors", "tensors_sha256",
                                                             "tensors_bytes", "meta_sha256")}
    cache.remove(key)
    cache.put(key, tensors, meta)
    frame = score_media([clip], run, cache.root, device="cpu")
    assert frame.loc[0, "status"] == "failed" and "not a finite number" in frame.loc[0, "reason"]
    assert frame.loc[0, "polarity"] == ""


def test_nan_weights_and_damaged_run_records_are_clear_errors(trained, tmp_path: Path) -> None:
    run, _ = trained
    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    weights = load_file(str(broken / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"not finite numbers \(NaN or inf\) in {name}"):
        load_run(broken)
    (broken / "run.json").write_text('{"format": 1, "model": ', encoding="utf-8")
    with pytest.raises(CheckpointError, match=rf"{broken / 'run.json'}: cannot read the run record"):
        read_run_record(broken)
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    (broken / "run.json").write_text(json.dumps({**record, "format": 99}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="run record format 99, this SentiFlow reads format 1"):
        read_run_record(broken)


def test_clips_differing_only_by_extension_get_different_ids(trained, tmp_path: Path) -> None:
    run, d = trained
    (tmp_path / "v").mkdir()
    shutil.copyfile(d / "v" / "0.mp4", tmp_path / "v" / "a.mp4")
    make_clip(tmp_path / "v" / "a.wav", seconds=1.0, video=False)
    frame = score_media([tmp_path / "v"], run, tmp_path / "c", device="cpu")
    assert sorted(frame["id"]) == ["v_a.mp4", "v_a.wav"] and set(frame["status"]) == {"scored"}
    assert clip_ids(["x/v/01.mp4", "y/v/01.mp4", "v/02.mp4"]) == ["v_01.mp4", "v_01.mp4~2", "v_02"]
