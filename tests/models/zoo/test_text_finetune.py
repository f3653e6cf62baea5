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
from pipeline.config import ConfigError
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
    from models.data import DataConfig, build_dataset
    from models.nn.text_encoder import TextEncoder
    from models.run_dir import load_run
    from models.trainer import predict_split
    from models.training import train_model

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


@pytest.fixture(scope="module")
def tiny_text_run(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """A tiny random BERT, a cache of its features of 12 sentences, their labels, and a text_finetune run trained
    on them (2 epochs, CPU bf16 autocast): (model folder, cache, labels CSV, run directory)."""
    from models.training import train_model
    from tests.helpers.text_models import SENTENCES, tiny_bert

    root = tmp_path_factory.mktemp("tiny_text")
    folder = tiny_bert(root / "bert")
    labels = root / "labels.csv"
    lines = ["id,text,label,mode"] + [f"s{i},{t} {'too' if i > 5 else ''},{(i % 5) - 2.0},{'valid' if i % 4 == 3 else 'train'}"
                                      for i, t in enumerate(SENTENCES * 2)]
    labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = SentiFlowConfig()
    config.extraction.options = {"text": {"model": str(folder), "seq_len": 16}}
    (root / "features.yaml").write_text(f"extraction:\n  options:\n    text: {{model: '{folder}', seq_len: 16}}\n",
                                        encoding="utf-8")
    table = read_labels(labels)
    extract_transcript_table(table, FeatureCache(root / "cache"), config, progress=False)
    run = train_model(root / "cache", table, "text_finetune", root / "run", config_path=root / "features.yaml",
                      device="cpu", modalities=["text"], recipe="finetune:mosi",
                      options={"model": {"text_model": str(folder)},
                               "train": {"epochs": 2, "seeds": [1], "amp": "bf16", "cpu_threads": 1}})
    return folder, root / "cache", labels, run


def test_the_recipe_trains_with_layer_decayed_encoder_and_head_rates_and_cpu_bf16(tiny_text_run) -> None:
    from models.optimization import TrainConfig, build_optimizer, parameter_names
    from models.recipes import load_recipe
    from models.run_dir import load_run

    folder, _, _, run = tiny_text_run
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert summary["amp"] == "torch.bfloat16" and summary["epochs_run"] == 2
    assert record["train"]["monitor"] == "loss:task" and record["task"]["loss"] == "l1"
    assert all(h["train"]["task"] == h["train"]["task"] for h in summary["history"])     # finite under bf16
    model, _ = load_run(run)
    train = TrainConfig.from_dict(load_recipe("text_finetune", "finetune:mosi")["train"])
    step = model.training_phases()[0].steps[0]
    groups = build_optimizer(step, train, train.lr, parameter_names(model)).param_groups
    rates = {(round(g["lr"], 12), g["weight_decay"]) for g in groups}
    encoder = {6e-5, 4.8e-5, 3.84e-5}            # the tiny encoder's layer 1, layer 0 and embeddings (decay 0.8)
    assert rates == {(lr, wd) for lr in encoder | {1e-3} for wd in (0.0, 0.01)}
    head = next(g for g in groups if g["lr"] == 1e-3 and g["weight_decay"] == 0.01)
    assert [p.shape for p in head["params"]] == [torch.Size([1, 16])]       # the head's weight alone


def test_init_from_starts_another_models_text_encoder_from_the_text_run(tiny_text_run, tmp_path, capsys) -> None:
    from flows.cli import main
    from models.base import ModelSpec
    from models.registry import build_model
    from models.run_dir import load_run
    from models.training import init_text_encoders

    folder, cache, labels, run = tiny_text_run
    tuned = load_run(run)[0].text_encoder.state_dict()
    hybrid = build_model("hybrid_modal", ModelSpec(dims={"text": 16}), {"text_model": str(folder)})
    assert not torch.equal(hybrid.text_encoder.state_dict()[ENCODER_WEIGHTS], tuned[ENCODER_WEIGHTS])
    assert init_text_encoders(hybrid, run) == ["text_encoder"]
    for key, value in hybrid.text_encoder.state_dict().items():
        assert torch.equal(value, tuned[key]), key
    with pytest.raises(ConfigError, match="model unimodal has no fine-tunable text encoder"):
        init_text_encoders(build_model("unimodal", ModelSpec(dims={"text": 16}), {}), run)
    with pytest.raises(ConfigError, match="does not fit text_encoder's"):
        init_text_encoders(build_model("text_finetune", ModelSpec(dims={"text": 384}), {}), run)
    options = tmp_path / "options.yaml"
    options.write_text(f"model: {{text_model: '{folder}'}}\ntrain: {{epochs: 1, cpu_threads: 1}}\n", encoding="utf-8")
    features = run.parent / "features.yaml"
    rc = main(["train", "--cache", str(cache), "--labels", str(labels), "--model", "text_finetune", "--config",
               str(features), "--options", str(options), "--modalities", "text", "--device", "cpu",
               "--init-from", str(run), "--out", str(tmp_path / "second")])
    assert rc == 0 and "run directory" in capsys.readouterr().out
    record = json.loads((tmp_path / "second" / "run.json").read_text(encoding="utf-8"))
    assert record["train"]["init_from"] == str(run)


ENCODER_WEIGHTS = "model.embeddings.word_embeddings.weight"


def test_an_encoder_of_another_width_than_the_cached_text_is_refused_by_name(tiny_text_run) -> None:
    from models.base import ModelSpec
    from models.registry import build_model

    folder = tiny_text_run[0]
    model = build_model("text_finetune", ModelSpec(dims={"text": 384}), {"text_model": str(folder)})
    batch = {"text_ids": torch.ones(2, 5, dtype=torch.long), "text_attention_mask": torch.ones(2, 5),
             "text": torch.zeros(2, 5, 384)}
    with pytest.raises(ConfigError, match=r"model.text_finetune.text_model .* is 16 wide but the cached text "
                                          r"features are 384 wide"):
        model(batch)
    batch["text"] = torch.zeros(2, 5, 16)
    assert model(batch).prediction.shape == (2, 1)
