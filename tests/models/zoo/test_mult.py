"""MulT (Tsai et al. 2019): shapes, masking, gradients, parameter count and overfitting 16 samples."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from flows.cli import main
from models.base import ModelSpec, count_parameters
from models.registry import build_model
from models.zoo.mult import MulT
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.labels import read_labels
from tests.helpers.batches import random_batch
from tests.helpers.fidelity import check_parameter_table
from tests.helpers.paths import SAMPLES

DIMS = {"text": 24, "audio": 16, "visual": 7}
LENS = {"text": 12, "audio": 20, "visual": 9}
# reduced sizes for the fast tests (the paper's: dim 30, 5 heads, 5 + 5 layers)
SMALL = {"dim": 16, "heads": 2, "layers": 1, "memory_layers": 1, "embed_dropout": 0.0, "relu_dropout": 0.0,
         "res_dropout": 0.0, "attn_dropout": {"text": 0.0, "audio": 0.0, "visual": 0.0}}

pytestmark = pytest.mark.usefixtures("one_thread")


def make_batch(n: int, seed: int = 0, dims: dict[str, int] = DIMS) -> dict[str, torch.Tensor]:
    """Random unaligned sequences, valid lengths of at least half of T, labels in [-3, 3]."""
    return random_batch(ModelSpec(dims=dims, seq_lens=LENS), n, seed, shortest=lambda t: t // 2)


def test_paper_config_shapes_and_parameter_count() -> None:
    spec = ModelSpec(dims={"text": 384, "audio": 128, "visual": 7}, task="classification", n_outputs=3)
    model = build_model("mult", spec)
    assert (model.config.dim, model.config.heads, model.config.layers) == (30, 5, 5)
    d = 30
    layer = lambda dim, cross: 12 * dim * dim + 9 * dim + (6 if cross else 4) * dim  # noqa: E731
    cross = 6 * (5 * layer(d, True) + 2 * d)
    memory = 3 * (5 * layer(2 * d, False) + 4 * d)
    conv = (384 + 128 + 7) * d
    head = 2 * (180 * 180 + 180) + 180 * 3 + 3
    assert count_parameters(model) == cross + memory + conv + head
    model.eval()
    out = model(make_batch(2, dims={"text": 384, "audio": 128, "visual": 7}))
    assert out.prediction.shape == (2, 3)
    assert out.representations["fused"].shape == (2, 180)


def test_losses_finite_and_every_parameter_learns() -> None:
    model = build_model("mult", ModelSpec(dims=DIMS), SMALL)
    batch = make_batch(7)  # odd: L1 sign gradients cannot cancel on the bias
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task"} and torch.isfinite(terms["task"])
    sum(terms.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_padding_and_absent_modality_are_ignored() -> None:
    model = build_model("mult", ModelSpec(dims=DIMS), SMALL).eval()
    batch = make_batch(4)
    batch["present"] = torch.tensor([[1.0, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 1]])
    before = model(batch).prediction
    changed = {k: v.clone() for k, v in batch.items()}
    changed["audio"][1] = torch.randn_like(changed["audio"][1]) * 5          # absent for sample 1
    pad = changed["visual_mask"][2] == 0
    changed["visual"][2, pad] = 100.0                                           # padded steps of sample 2
    after = model(changed).prediction
    assert torch.allclose(before, after, atol=1e-5)
    assert torch.isfinite(after).all()


def test_uses_a_pair_of_modalities_and_refuses_no_target() -> None:
    with pytest.raises(ConfigError, match="at least one of text/audio/visual"):
        build_model("mult", ModelSpec(dims={}))
    model = build_model("mult", ModelSpec(dims={"text": 24, "audio": 16}), SMALL)
    assert sorted(model.cross) == ["audio_from_text", "text_from_audio"]
    batch = make_batch(3, dims={"text": 24, "audio": 16})
    assert model(batch).prediction.shape == (3, 1)
    with pytest.raises(ConfigError, match="use_"):
        build_model("mult", ModelSpec(dims=DIMS), {"use_text_target": False, "use_audio_target": False,
                                                    "use_visual_target": False})
    assert MulT.aligned is False


def test_text_only_builds_as_the_multilingual_papers_row() -> None:
    """Table 1's "MuT T": the lone text target attends to itself (CM_{L->L}), then memory and head as usual."""
    spec = ModelSpec(dims={"text": 384}, seq_lens={"text": 12})
    model = build_model("mult", spec)
    assert list(model.cross) == ["text_from_text"] and list(model.memory) == ["text"]
    d = 30
    layer = lambda dim, cross: 12 * dim * dim + 9 * dim + (6 if cross else 4) * dim  # noqa: E731
    expected = (5 * layer(d, True) + 2 * d) + (5 * layer(d, False) + 2 * d) + 384 * d + 2 * (d * d + d) + d + 1
    assert count_parameters(model) == expected == 125_731
    small = build_model("mult", ModelSpec(dims={"text": 24}), SMALL).eval()
    batch = {k: v for k, v in make_batch(4).items() if k.startswith("text") or k == "label"}
    before = small(batch).prediction
    assert before.shape == (4, 1) and torch.isfinite(before).all()
    changed = {k: v.clone() for k, v in batch.items()}
    changed["text"][1, changed["text_mask"][1] == 0] = 50.0          # padding of sample 1 is never read
    assert torch.allclose(small(changed).prediction, before, atol=1e-5)
    changed["text"][1, 0] += 1.0                                      # its first token is
    assert not torch.allclose(small(changed).prediction[1], before[1])


def test_text_only_overfits_16_samples() -> None:
    torch.manual_seed(0)
    model = build_model("mult", ModelSpec(dims={"text": 24}), SMALL)
    batch = {k: v for k, v in make_batch(16, seed=1).items() if k.startswith("text") or k == "label"}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = model.loss_terms(batch, model(batch))["task"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert model.loss_terms(batch, model(batch))["task"].item() < 0.15


def test_overfits_16_samples() -> None:
    torch.manual_seed(0)
    model = build_model("mult", ModelSpec(dims=DIMS), SMALL)
    batch = make_batch(16, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        loss = sum(model.loss_terms(batch, model(batch)).values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    final = model.loss_terms(batch, model(batch))["task"].item()
    assert first > 1.0 and final < 0.15, (first, final)




@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """Four sample clips with labels, their log-mel (audio) and FER (visual) features in a fresh cache."""
    if not (SAMPLES / "labels.csv").is_file():
        pytest.skip("sample_videos/labels.csv is not there")
    rows = list(csv.DictReader((SAMPLES / "labels.csv").read_text(encoding="utf-8").splitlines()))[:4]
    d = tmp_path_factory.mktemp("zoo_cli")
    with open(d / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["video_id", "clip_id", "text", "label", "mode"])
        w.writeheader()
        for i, r in enumerate(rows):
            mode = "valid" if i == 3 else "train"
            w.writerow({k: r[k] for k in ("video_id", "clip_id", "text", "label")} | {"mode": mode})
    table = read_labels(d / "labels.csv", SAMPLES, require_media=True)
    ExtractionRunner(SentiFlowConfig(), FeatureCache(d / "cache"), only=["logmel", "face", "fer"]).run(
        [r.path for r in table], progress=False)
    return d


@pytest.mark.slow
@pytest.mark.parametrize("name, model_options", [
    ("mult", "{dim: 8, heads: 2, layers: 1, memory_layers: 1}"),
])
def test_trains_from_the_cache_through_the_cli(tiny_cache, tmp_path, name, model_options):
    opts = tmp_path / "opts.yaml"
    opts.write_text(f"model: {model_options}\ntrain: {{epochs: 2, batch_size: 2}}\n", encoding="utf-8")
    run = tmp_path / "run"
    rc = main(["train", "--cache", str(tiny_cache / "cache"), "--labels", str(tiny_cache / "labels.csv"),
               "--media-root", str(SAMPLES), "--model", name, "--modalities", "audio,visual", "--options",
               str(opts), "--out", str(run), "--device", "cpu"])
    assert rc == 0
    record = json.loads((run / "run.json").read_text())
    assert record["model"] == name and sorted(record["spec"]["dims"]) == ["audio", "visual"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert all(math.isfinite(v) for h in metrics["history"] for v in h["train"].values())


def test_the_fidelity_tables_parameter_counts():
    """docs/fidelity/mult.md prints these counts: each row's model is built and counted here."""
    check_parameter_table("mult", 5)


@pytest.mark.gpu
def test_trains_a_step_on_cuda_with_bf16_autocast() -> None:
    model = build_model("mult", ModelSpec(dims=DIMS), SMALL).cuda()
    batch = {k: v.cuda() for k, v in make_batch(7).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        terms = model.loss_terms(batch, model(batch))
    assert all(torch.isfinite(v.float()) for v in terms.values())
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
