"""AdaMML + contextual LSTM (multilingual MSA paper, Section 5.2): window pooling, the paper's decision loss by
hand, Gumbel-softmax decisions and temperature schedule, the hierarchical contextual LSTM fusion recomputed by
hand, the dropout placements, Table 1's rows, the fidelity table's parameter counts, and training on the real
sample cache and through the CLI with the paper recipe.

Reduced config for the synthetic tests: 4 windows, policy 16/32, contextual LSTMs 24, no dropout; 16 samples
with sequence lengths text 8 / audio 12 / visual 10 and dims 10 / 6 / 4.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.nn.losses import decision_loss
from models.nn.masking import last_valid, window_pool
from models.nn.rnn import run_rnn
from models.registry import build_model
from pipeline.config import ConfigError
from tests.helpers.batches import random_batch
from tests.helpers.cli_runs import train_on_sample_cache

torch.set_num_threads(1)

FIDELITY = Path(__file__).resolve().parents[3] / "docs" / "fidelity" / "adamml.md"
PAPER = {"text": 300, "audio": 25, "visual": 35}     # Section 3: GloVe 300, librosa 25, OpenFace 35 action units
OURS = {"text": 384, "audio": 128, "visual": 135}    # SentiFlow's default unaligned features (the sample cache's)
TYPICAL = ModelSpec(dims={"text": 384, "audio": 31, "visual": 35}, seq_lens={"text": 50, "audio": 128, "visual": 64})
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4}, seq_lens={"text": 8, "audio": 12, "visual": 10})
SMALL_CFG = {"n_windows": 4, "policy_embed": 16, "policy_hidden": 32, "context_hidden": 24, "fusion_hidden": 24,
             "dropout": 0.0}


def make_batch(spec: ModelSpec, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random unaligned features with ragged masks; sample 1 has no audio."""
    batch = random_batch(spec, n, seed, full_first=True, absent={1: ["audio"]})
    batch["audio_mask"][1] = 0.0
    return batch


def test_window_pool_averages_equal_consecutive_windows():
    x = torch.arange(12, dtype=torch.float32).view(1, 12, 1).repeat(2, 1, 1)
    mask = torch.ones(2, 12)
    mask[1, 6:] = 0.0                                     # second row: 6 valid steps
    pooled, wmask = window_pool(x, mask, 3)
    assert torch.allclose(pooled[0, :, 0], torch.tensor([1.5, 5.5, 9.5]))
    assert torch.allclose(pooled[1, :, 0], torch.tensor([0.5, 2.5, 4.5]))
    assert wmask.tolist() == [[1, 1, 1], [1, 1, 1]]
    short, smask = window_pool(x[:, :2], torch.ones(2, 2), 3)   # fewer steps than windows
    assert smask.tolist() == [[1, 1, 0], [1, 1, 0]]
    assert torch.allclose(short[0, :2, 0], torch.tensor([0.0, 1.0]))


def test_decision_loss_is_the_papers_mean_over_samples_of_window_means():
    """DL = 1/N sum_i 1/L_i sum_l |sum_m PL_{l,m} - Target| (Section 5.2), by hand."""
    d = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],     # 3, 1 (third window empty)
                      [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]],     # 0, 2, 3
                      [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])    # no window at all
    wm = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    # sample 0: (|3-2| + |1-2|) / 2 = 1; sample 1: (2 + 0 + 1) / 3 = 1; sample 2 has no window: left out
    assert torch.isclose(decision_loss(d, wm, 2.0), torch.tensor(1.0))
    # sample 0: (2 + 0) / 2 = 1; sample 1: (1 + 1 + 2) / 3 = 4/3
    assert torch.isclose(decision_loss(d, wm, 1.0), torch.tensor((1.0 + 4.0 / 3.0) / 2.0))
    # the mean of per-sample means, not the mean over all windows: one window in sample 0 (|3-1| = 2), three in
    # sample 1 (4/3): (2 + 4/3) / 2 = 5/3, where the pooled windows would give (2 + 1 + 1 + 2) / 4 = 1.5
    wm2 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert torch.isclose(decision_loss(d, wm2, 1.0), torch.tensor(5.0 / 3.0))
    assert decision_loss(d, torch.zeros(3, 3), 2.0).item() == 0.0
    # its gradient reaches the decisions (straight-through Gumbel samples carry it to the policy logits)
    logits = torch.zeros(1, 2, 3, 2, requires_grad=True)
    sample = torch.nn.functional.gumbel_softmax(logits, tau=1.0, hard=True)[..., 1]
    decision_loss(sample, torch.ones(1, 2), 0.5).backward()
    assert logits.grad.abs().sum() > 0


def test_default_config_shapes_decisions_and_temperature_schedule():
    torch.manual_seed(0)
    model = build_model("adamml", TYPICAL)
    cfg = model.config
    assert (cfg.temperature, cfg.temperature_decay, cfg.policy_hidden) == (5.0, 0.965, 256)
    assert (cfg.decision_loss, cfg.policy_dropout, cfg.fusion_dropout, cfg.unimodal_context) == (False, True, True,
                                                                                                   True)
    batch = make_batch(TYPICAL, n=4)
    out = model.train()(batch)
    assert out.prediction.shape == (4, 1)
    d = out.extras["decisions"]
    assert d.shape == (4, 8, 3)
    assert set(d.unique().tolist()) <= {0.0, 1.0}
    assert d[1, :, 1].sum() == 0                                # the absent audio is never chosen
    assert set(model.loss_terms(batch, out)) == {"task"}       # Table 1's main row: no decision loss
    model.set_epoch(10)
    assert model.tau == pytest.approx(5.0 * 0.965 ** 10)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch).prediction, model(batch).prediction)   # argmax policy: deterministic


def test_fusion_is_the_hierarchical_contextual_lstm_many_to_one():
    """Prediction = head(last output of the final contextual LSTM over the concatenated unimodal contextual
    LSTM outputs of the gated window means), recomputed from the model's own decisions."""
    torch.manual_seed(0)
    model = build_model("adamml", SMALL, SMALL_CFG).eval()
    batch = make_batch(SMALL, n=5, seed=2)
    batch["text_mask"][2, 3:] = 0.0       # 3 text steps: windows 4.. empty for text; audio/visual still longer
    with torch.no_grad():
        out = model(batch)
        d, span = out.extras["decisions"], model._span_mask(out.extras["window_mask"])
        ctx = []
        for i, m in enumerate(model.used):
            pooled, _ = window_pool(batch[m], batch[f"{m}_mask"], 4)
            ctx.append(run_rnn(model.context_rnn[m], pooled * d[..., i:i + 1], span)[0])
        final, _ = run_rnn(model.fusion_rnn, torch.cat(ctx, -1), span)
        expected = model.head(last_valid(final, span))
    assert torch.allclose(out.prediction, expected, atol=1e-6)
    assert 0 < d.sum() < d.numel()        # the policy keeps some windows and zeroes others at this seed


def test_an_absent_modality_is_never_read():
    """A sample's absent modality ("present" = 0) is never selected: its features, however large, change
    nothing."""
    torch.manual_seed(0)
    model = build_model("adamml", SMALL, {**SMALL_CFG, "use_policy": False}).eval()
    batch = make_batch(SMALL, n=3, seed=4)
    batch["present"][0, 2] = 0.0                                # visual absent for sample 0
    with torch.no_grad():
        before = model(batch).prediction
        batch["visual"][0] = torch.randn_like(batch["visual"][0]) * 10
        after = model(batch).prediction
    assert torch.equal(before[0], after[0])


def test_dropout_placements_are_the_papers_switches():
    """policy_dropout drops the policy network's inputs, fusion_dropout the fusion network's (Figure 4)."""
    batch = make_batch(SMALL, n=4, seed=5)

    def twice(options: dict) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = build_model("adamml", SMALL, {**SMALL_CFG, "dropout": 0.5, **options}).train()
        with torch.no_grad():
            return model(batch), model(batch)

    a, b = twice({"policy_dropout": False, "fusion_dropout": True})
    assert torch.equal(a.extras["policy_logits"], b.extras["policy_logits"])     # the policy sees no dropout
    a, b = twice({"policy_dropout": True, "fusion_dropout": False})
    assert not torch.equal(a.extras["policy_logits"], b.extras["policy_logits"])
    a, b = twice({"policy_dropout": False, "fusion_dropout": False, "use_policy": False})
    assert torch.equal(a.prediction, b.prediction)                               # no other dropout anywhere
    a, b = twice({"policy_dropout": False, "fusion_dropout": True, "use_policy": False})
    assert not torch.equal(a.prediction, b.prediction)


def test_every_parameter_gets_a_gradient_and_losses_are_finite():
    torch.manual_seed(0)
    model = build_model("adamml", SMALL, {**SMALL_CFG, "decision_loss": True}).train()
    batch = make_batch(SMALL, n=6)
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task", "decision"}
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(sum(terms.values()), params, allow_unused=True)
    for n, g in zip(names, grads):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n


def test_policy_ablation_uses_every_present_modality():
    model = build_model("adamml", SMALL, {**SMALL_CFG, "use_policy": False, "decision_loss": True}).train()
    batch = make_batch(SMALL, n=4)
    out = model(batch)
    d = out.extras["decisions"]
    assert d[0].sum() == 4 * 3 and d[1, :, 1].sum() == 0
    assert set(model.loss_terms(batch, out)) == {"task"}


def test_table1_rows_and_variants_build():
    rows = build_model("adamml", SMALL).ablations
    assert set(rows) == {"No DL target", "DL target=2", "dropout on fusion only"}
    batch = make_batch(SMALL, n=3)
    for label, overrides in rows.items():
        model = build_model("adamml", SMALL, {**SMALL_CFG, **overrides}).train()
        terms = model.loss_terms(batch, model(batch))
        assert set(terms) == ({"task", "decision"} if label == "DL target=2" else {"task"}), label
    single = build_model("adamml", SMALL, {**SMALL_CFG, "unimodal_context": False})
    assert not hasattr(single, "context_rnn") and single.fusion_rnn.input_size == 10 + 6 + 4
    assert single(batch).prediction.shape == (3, 1)


def test_text_only_configuration_runs_and_bad_settings_are_refused():
    spec = ModelSpec(dims={"text": 10}, seq_lens={"text": 8})
    model = build_model("adamml", spec, {**SMALL_CFG, "modalities_used": ["text"]})
    batch = {k: v for k, v in make_batch(SMALL, n=3).items() if k in ("text", "text_mask", "label")}
    assert model(batch).prediction.shape == (3, 1)
    with pytest.raises(ConfigError, match="target_modalities must lie in"):
        build_model("adamml", spec, {"modalities_used": ["text"], "decision_loss": True})
    with pytest.raises(ConfigError, match="dropout must lie in"):
        build_model("adamml", SMALL, {"dropout": 1.0})


def test_decision_loss_drives_the_policy_towards_the_target():
    torch.manual_seed(0)
    model = build_model("adamml", SMALL, {**SMALL_CFG, "decision_loss": True, "target_modalities": 1.0}).train()
    batch = make_batch(SMALL, n=16, seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(120):
        opt.zero_grad()
        model.loss_terms(batch, model(batch))["decision"].backward()
        opt.step()
    rates = []
    with torch.no_grad():                       # the sampled (training-mode) policy: its expected usage
        for _ in range(20):
            out = model(batch)
            wm = out.extras["window_mask"]
            rates.append(((out.extras["decisions"].sum(-1) * wm).sum() / wm.sum()).item())
    assert abs(sum(rates) / len(rates) - 1.0) < 0.25, rates


def fidelity_rows() -> dict[str, tuple[dict[str, int], int]]:
    """The parameter counts docs/fidelity/adamml.md prints: label -> (input widths, count)."""
    rows = {}
    for label, dims in (("paper features", PAPER), ("SentiFlow default features", OURS)):
        spec = ModelSpec(dims=dims, seq_lens={m: 20 for m in dims})
        rows[label] = (dims, count_parameters(build_model("adamml", spec)))
    return rows


def test_the_fidelity_table_prints_the_exact_parameter_counts():
    doc = FIDELITY.read_text(encoding="utf-8")
    for label, (dims, count) in fidelity_rows().items():
        row = f"| {label} | {dims['text']}, {dims['audio']}, {dims['visual']} | {count:,} |"
        assert row in doc, f"{FIDELITY.name} lacks the row {row}"
    text_only = count_parameters(build_model("adamml", ModelSpec(dims={"text": 384}, seq_lens={"text": 20}),
                                             {"modalities_used": ["text"]}))
    assert f"| SentiFlow text only (MOSI text) | 384 | {text_only:,} |" in doc
    model = build_model("adamml", ModelSpec(dims=PAPER, seq_lens={m: 20 for m in PAPER}))
    parts = {"policy network (embeddings, LSTM, decision logits)": [model.policy_embed, model.policy_rnn,
                                                                    model.policy_head],
             "unimodal contextual LSTMs": [model.context_rnn], "final contextual LSTM": [model.fusion_rnn],
             "prediction head": [model.head]}
    total = 0
    for label, modules in parts.items():
        n = sum(count_parameters(m) for m in modules)
        total += n
        assert f"| {label} | {n:,} |" in doc, f"{FIDELITY.name} lacks the component row {label}: {n:,}"
    assert total == count_parameters(model)


# ---- real data: the sample cache


def test_overfits_the_sample_cache_rows(sample_cache, tmp_path) -> None:
    """On the real unaligned features of the bundled clips, with the paper recipe (decision loss on), the
    train MAE falls to a small share of its start, and the trainer anneals the Gumbel temperature per epoch."""
    from extractors.config import SentiFlowConfig
    from models.data import build_dataset
    from models.prepare import label_table
    from models.recipes import apply_recipe
    from models.trainer import Trainer
    from models.training import RunOptions, task_spec
    from pipeline.cache import FeatureCache

    cache, media_root, labels = sample_cache
    opts = RunOptions.from_dict(apply_recipe("adamml", "paper:moseas_dl2", {
        "model": {"dropout": 0.0}, "train": {"epochs": 60, "batch_size": 8, "cpu_threads": 1, "patience": 0}}))
    dataset = build_dataset(SentiFlowConfig(), FeatureCache(cache), label_table(labels, media_root), opts.data)
    assert dataset.dims == OURS
    torch.manual_seed(0)
    model = build_model("adamml", task_spec(opts, dataset), opts.model)
    state = Trainer(model, dataset, opts.train, tmp_path, torch.device("cpu")).fit()
    first, last = state["history"][0]["train"]["task"], state["history"][-1]["train"]["task"]
    assert first > 0.5 and last < 0.2 * first, (first, last)
    assert "decision" in state["history"][-1]["train"]
    assert model.tau == pytest.approx(5.0 * 0.965 ** 59)


def test_trains_through_the_cli_with_the_paper_recipe(sample_cache, tmp_path) -> None:
    """`sentiflow train --recipe paper:moseas_dl2`: MAE task loss, the decision term, and the policy's
    modality-utilisation histogram (Figure 4) in the run's insights."""
    record = train_on_sample_cache(sample_cache, tmp_path, "adamml", "paper:moseas_dl2",
                                   {"train": {"epochs": 2, "cpu_threads": 1}})
    run = tmp_path / "run"
    assert record["recipe"] == "paper:moseas_dl2" and record["task"]["loss"] == "l1"
    assert record["spec"]["dims"] == OURS
    assert record["parameters"] == fidelity_rows()["SentiFlow default features"][1]
    cfg = record["model_config"]
    assert (cfg["decision_loss"], cfg["target_modalities"], cfg["policy_dropout"], cfg["fusion_dropout"]) == (
        True, 2.0, True, True)
    train = record["train"]
    assert (train["optimizer"], train["lr"], train["batch_size"], train["weight_decay"], train["monitor"]) == (
        "adam", 1e-3, 32, 0.0, "loss:task")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["history"][0]["train"]) == {"task", "decision", "total"}
    insights = sorted(run.rglob("insights.json"))
    assert insights, "the run wrote no insights"
    parts = json.loads(insights[0].read_text(encoding="utf-8"))["modality_selection"]["parts"]
    assert set(parts) == {"text", "audio", "visual"}
    assert all(0.0 <= p["mean"] <= 1.0 for p in parts.values())
    assert (insights[0].parent / "modality_selection.png").is_file()


@pytest.mark.gpu
def test_trains_a_step_on_cuda():
    """Every tensor the model creates lands on the batch's device."""
    dev = torch.device("cuda")
    model = build_model("adamml", SMALL, {**SMALL_CFG, "decision_loss": True}).to(dev).train()
    batch = {k: v.to(dev) for k, v in make_batch(SMALL, n=4).items()}
    terms = model.loss_terms(batch, model(batch))
    sum(terms.values()).backward()
    assert all(torch.isfinite(t) for t in terms.values())
    assert model.eval().predict(batch).device.type == "cuda"


def test_ablate_runs_table1_rows(sample_cache, tmp_path, capsys) -> None:
    """`sentiflow ablate --components` runs Table 1's DL row and Figure 4's dropout variant on the recipe; the
    recipe's own setting ("No DL target") is reported as already in effect, not trained twice."""
    import pandas as pd
    import yaml

    from flows.cli import main

    cache, media_root, labels = sample_cache
    opts = tmp_path / "opts.yaml"
    opts.write_text(yaml.safe_dump({"train": {"epochs": 1, "batch_size": 4, "cpu_threads": 1, "patience": 0}}),
                    encoding="utf-8")
    out = tmp_path / "ablation"
    rc = main(["ablate", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "adamml", "--recipe", "paper:moseas", "--options", str(opts), "--out", str(out),
               "--device", "cpu", "--modality-sets", "TAV",
               "--components", "No DL target,DL target=2,dropout on fusion only", "--seeds", "1"])
    assert rc == 0
    assert "| TAV | DL target=2 |" in capsys.readouterr().out
    table = pd.read_csv(out / "table.csv", dtype=str)
    assert list(table["components"]) == ["full", "DL target=2", "dropout on fusion only"]
    record = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert [s["component"] for s in record["settings"]["components_skipped"]] == ["No DL target"]
    configs = {r["cell"]["components"]: json.loads((out / r["run_dir"] / "run.json").read_text())["model_config"]
               for r in record["runs"]}
    assert configs["DL target=2"]["decision_loss"] is True and configs["full"]["decision_loss"] is False
    assert configs["dropout on fusion only"]["policy_dropout"] is False
