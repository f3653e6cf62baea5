"""The fine-tuned text model: it overfits 32 real MOSI sentences from the cached token ids, its fine-tuned encoder
is what scoring loads, its recipe trains with separate encoder and head learning rates, and the text branch of
another model starts from it (`train.init_from`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from extractors.config import SentiFlowConfig
from extractors.text_only import extract_transcript_table
from pipeline.cache import FeatureCache
from pipeline.labels import LabelTable, read_labels
from tests.helpers.paths import SHARED

MOSI_TEXT = SHARED / "data" / "mosi_text"

pytestmark = pytest.mark.usefixtures("one_thread")


def mosi_rows(n: int, mode: str = "train") -> LabelTable:
    """The first `n` MOSI training sentences (../shared), all in split `mode`; skip without ../shared."""
    if not (MOSI_TEXT / "train.csv").is_file():
        pytest.skip(f"needs {MOSI_TEXT / 'train.csv'}")
    rows = read_labels(MOSI_TEXT / "train.csv", default_mode="train").rows[:n]
    for row in rows:
        row.mode = mode
    return LabelTable(rows, str(MOSI_TEXT))


@pytest.fixture(scope="module")
def mosi32(tmp_path_factory) -> tuple[Path, LabelTable]:
    """A cache of the packaged MiniLM's features (and token ids) of 32 MOSI sentences, every row in train."""
    table = mosi_rows(32)
    cache_dir = tmp_path_factory.mktemp("mosi32") / "cache"
    extract_transcript_table(table, FeatureCache(cache_dir), SentiFlowConfig(), progress=False)
    return cache_dir, table


@pytest.mark.slow
def test_overfits_32_mosi_sentences_and_scoring_uses_the_fine_tuned_encoder(mosi32, tmp_path) -> None:
    """12 epochs of 4 updates: about 40 s of CPU time on the 2-core machine (2 min wall at load 8)."""
    from models.nn.text_encoder import TextEncoder
    from models.run_dir import load_run
    from models.trainer import predict_split
    from models.training import train_model
    from models.data import build_dataset, DataConfig

    cache_dir, table = mosi32
    run = train_model(cache_dir, table, "text_finetune", tmp_path / "run", device="cpu", modalities=["text"],
                      options={"model": {"dropout": 0.0},
                               "train": {"epochs": 12, "batch_size": 8, "lr": 1e-3, "schedule": "constant",
                                         "param_groups": [{"match": r"^text_encoder\.", "lr": 1e-4}],
                                         "cpu_threads": 1, "checkpoint_every": 1000},
                               "task": {"loss": "mse"}, "data": {"valid_fraction": 0.0}})
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    first = summary["history"][0]["train"]["task"]
    assert summary["metrics"]["train"]["mae"] < 0.3 and first > 1.0, (first, summary["metrics"]["train"])
    model, record = load_run(run)
    assert record["data"]["token_inputs"] is True
    pretrained = TextEncoder.from_pretrained(record["model_config"]["text_model"], "x").state_dict()
    tuned = model.text_encoder.state_dict()
    moved = [k for k in pretrained if not torch.equal(pretrained[k], tuned[k])]
    assert len(moved) > len(pretrained) // 2         # the weights scoring loads are the fine-tuned ones
    data = DataConfig(modalities=["text"], token_inputs=True, valid_fraction=0.0)
    split = build_dataset(SentiFlowConfig(), FeatureCache(cache_dir), table, data).splits["train"]
    pred = predict_split(model, split, torch.device("cpu"), 32)["prediction"].flatten()
    mae = (pred - split.tensors["label"].flatten()).abs().mean().item()
    assert mae == pytest.approx(summary["metrics"]["train"]["mae"], abs=1e-4)
