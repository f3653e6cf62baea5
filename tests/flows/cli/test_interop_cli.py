"""`sentiflow import` -> `cache ls --dataset` -> `train` on the SDK's word-aligned features, and `export`."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import yaml

from flows.cli import main
from models.interop.store import FEATURES_FILE, IMPORTS_DIR, OPTIONS_FILE
from pipeline.interop.csd import open_csd
from tests.helpers.interop_files import write_sdk_csd, write_word_aligned_set

pytestmark = pytest.mark.usefixtures("one_thread")


def test_import_check_and_train_on_sdk_word_aligned_features(tmp_path, capsys):
    files = write_word_aligned_set(tmp_path)
    cache = tmp_path / "cache"
    for modality in ("audio", "visual", "text"):
        assert main(["import", "csd", str(files[modality]), "--cache", str(cache), "--as", modality, "--aligned",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "audio <- toy_COVAREP (word-aligned, imported_audio): 3 imported, 0 already there, 0 empty, 0 failed" in out
    config, options = cache / IMPORTS_DIR / FEATURES_FILE, cache / IMPORTS_DIR / OPTIONS_FILE
    assert f"--config {config} --options {options}" in out

    labels = tmp_path / "with_unknown.csv"
    labels.write_text(files["labels"].read_text() + "vidZ_1,0.0,train\n")
    assert main(["cache", "ls", str(cache), "--dataset", str(labels), "--config", str(config),
                 "--options", str(options)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("vidZ_1: lacks text (no cached 'imported_text' features (not imported)); audio (no cached "
                      "'imported_audio' features (not imported)); visual (no cached 'imported_visual' features "
                      "(not imported))")
    assert out[-1] == ("4 rows (text <- imported_text, audio <- imported_audio, visual <- imported_visual): "
                       "text 3/4, audio 3/4, visual 3/4")

    opts = yaml.safe_load(options.read_text())         # a user adds training settings beside the import's data:
    options.write_text(yaml.safe_dump({**opts, "train": {"epochs": 2, "batch_size": 2, "cpu_threads": 1}}))
    assert main(["import", "csd", str(files["audio"]), "--cache", str(cache), "--as", "audio", "--aligned",
                 "--no-progress"]) == 0                 # a re-import keeps them
    assert yaml.safe_load(options.read_text())["train"]["epochs"] == 2
    run = tmp_path / "run"
    assert main(["train", "--cache", str(cache), "--labels", str(files["labels"]), "--config", str(config),
                 "--options", str(options), "--model", "ef_lstm", "--out", str(run), "--device", "cpu"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["spec"]["dims"] == {"text": 12, "audio": 5, "visual": 7}
    assert record["spec"]["seq_lens"] == {"text": 50, "audio": 50, "visual": 50}
    assert record["dataset"]["splits"] == {"train": 2, "valid": 1} and not record["dataset"]["skipped"]
    assert record["data"]["sources"]["audio"]["extractor"] == "imported_audio"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert np.isfinite(metrics["valid"]["mae"]) and metrics["valid"]["n"] == 1

    out_csd = tmp_path / "facet_out.csd"
    assert main(["export", "csd", "--cache", str(cache), "--labels", str(files["labels"]), "--as", "visual",
                 "--out", str(out_csd), "--config", str(config), "--options", str(options), "--aligned",
                 "--sdk-ids"]) == 0
    assert f"{out_csd}: 3 rows written, 0 left out" in capsys.readouterr().out
    with open_csd(out_csd) as cs:
        assert cs.keys == ["vidA[0]", "vidA[1]", "vid_B2[0]"] and cs.segment("vidA[1]").features.shape == (6, 7)


def test_import_errors_are_one_line_and_bad_files_fail_the_command(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "unaligned_50.pkl"
    evil.write_bytes(pickle.dumps({"train": {"id": ["v$_$1"], "audio": Evil()}}))
    assert main(["import", "mmsa", str(evil), "--cache", str(tmp_path / "cache"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused to load posix.system" in err[0] and not marker.exists()

    words = write_sdk_csd(tmp_path / "words.csd", "toy_Words",
                          {"v[0]": (np.array([[b"hi"], [b"there"]]), np.array([[0.0, 0.2], [0.2, 0.5]]))})
    assert main(["import", "csd", str(words), "--cache", str(tmp_path / "cache"), "--as", "text",
                 "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "0 imported" in out and "1 failed" in out and "not numbers" in out
    assert not (tmp_path / "cache" / IMPORTS_DIR / FEATURES_FILE).exists()


def test_cache_ls_dataset_lists_rows_lacking_extracted_features(tmp_path, capsys):
    from extractors.config import SentiFlowConfig
    from extractors.runner import ExtractionRunner
    from pipeline.cache import FeatureCache
    from tests.helpers.paths import SAMPLES

    labels = SAMPLES / "labels.csv"
    if not labels.is_file():
        pytest.skip("sample_videos/labels.csv is not there")
    config = SentiFlowConfig.from_dict({"extraction": {"isolate": False}})
    ExtractionRunner(config, FeatureCache(tmp_path / "cache"), only=["opensmile"]).run(
        [str(SAMPLES / "astro_front" / "01.mp4")], progress=False)
    opts = tmp_path / "opts.yaml"
    opts.write_text(yaml.safe_dump({"data": {"modalities": ["audio"],
                                             "sources": {"audio": {"extractor": "opensmile"}}}}))
    assert main(["cache", "ls", str(tmp_path / "cache"), "--dataset", str(labels), "--options", str(opts)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "astro_mirror_01: lacks audio (no cached 'opensmile' features (not extracted))" in out
    assert not any(line.startswith("astro_front_01") for line in out)
    assert out[-1] == "10 rows (audio <- opensmile): audio 1/10"
