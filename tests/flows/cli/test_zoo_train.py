"""Every registered model trains end to end from a real cache through `sentiflow train`, and scores a clip.

The cache is built once from six bundled sample clips with every default extractor (unaligned and
word-aligned features), so each model reads exactly what a user's run would give it.
"""

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from flows.cli import main
from models.registry import MODELS
from pipeline.cache import FeatureCache
from pipeline.labels import read_labels
from tests.helpers.paths import ROOT

SAMPLES = ROOT / "sample_videos"
CLIPS = ["astro_front/01", "astro_front/02", "astro_front/04", "astro_mirror/01", "astro_mirror/02",
         "astro_cool/01"]

# training options per model for a 2-epoch smoke run on six clips; the models' own configs stay the papers'
OPTIONS: dict[str, dict] = {
    "crosslingual_nce": {"model": {"cross_lingual": "none", "translation_augmentation": False}},   # no translations
    "hybrid_modal": {"train": {"lr": 5e-5}},
}


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("zoo")
    media = d / "media"
    rows = ["video_id,clip_id,text,label,mode"]
    table = {f"{r.video_id}/{r.clip_id}": r for r in read_labels(SAMPLES / "labels.csv", SAMPLES)}
    for i, clip in enumerate(CLIPS):
        r = table[clip]
        (media / r.video_id).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLES / f"{clip}.mp4", media / r.video_id / f"{r.clip_id}.mp4")
        mode = "valid" if i in (2, 5) else "train"
        rows.append(f'{r.video_id},{r.clip_id},"{r.text}",{r.label},{mode}')
    (media / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = SentiFlowConfig()
    config.extraction.isolate = False
    labels = read_labels(media / "labels.csv", media)
    summary = ExtractionRunner(config, FeatureCache(d / "cache")).run(
        [r.path for r in labels], progress=False, extras={r.path: {"transcript": r.text} for r in labels})
    assert summary.count("failed") == 0, summary.table()
    return d / "cache", media


@pytest.mark.parametrize("name", MODELS.names())
def test_model_trains_from_the_cache_and_scores(name: str, tiny_cache: tuple[Path, Path], tmp_path: Path) -> None:
    cache, media = tiny_cache
    opts = {"train": {"epochs": 2, "batch_size": 4, "patience": 0, "cpu_threads": 1}}
    for section, values in OPTIONS.get(name, {}).items():
        opts.setdefault(section, {}).update(values)
    opts_file = tmp_path / "opts.yaml"
    opts_file.write_text(yaml.safe_dump(opts), encoding="utf-8")
    run = tmp_path / "run"
    rc = main(["train", "--cache", str(cache), "--labels", str(media / "labels.csv"), "--media-root", str(media),
               "--model", name, "--out", str(run), "--options", str(opts_file), "--device", "cpu"])
    assert rc == 0
    metrics = (run / "metrics.json").read_text()
    assert "valid" in metrics
    assert (run / "model.safetensors").is_file() and (run / "loss_curve.png").is_file()
    out = tmp_path / "scores.csv"
    clip = next(media.glob("astro_front/*.mp4"))
    rc = main(["score", str(clip), "--model", str(run), "--cache", str(cache), "--out", str(out), "--device", "cpu"])
    assert rc == 0
    import pandas as pd

    scores = pd.read_csv(out)
    assert len(scores) == 1
    assert scores["status"][0] == "scored", scores.to_dict("records")
    assert -3.0 <= float(scores["score"][0]) <= 3.0 and torch.isfinite(torch.tensor(float(scores["score"][0])))
