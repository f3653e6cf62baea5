"""Seq2Seq2Sentiment: the five variants, Alg. 2's sequential phases with frozen levels, the Tables 2-3 rows,
parameter counts (docs/fidelity/seq2seq.md), the word-level baseline, and overfitting the real sample clips.

Unit checks use random word-aligned batches of dims text 10 / audio 6 / visual 4; the trainer checks run on the
real sample cache (word-aligned MiniLM text 384, acoustic 31, FER 135).
"""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.optimization import TrainConfig
from models.registry import MODELS, build_model
from models.trainer import Trainer
from models.zoo.seq2seq import PAPER_ROWS, REGRESSION, TRANSLATION, TRANSLATION2
from pipeline.config import ConfigError
from tests.helpers.batches import random_aligned_batch
from tests.helpers.fidelity import parameter_table
from tests.helpers.sample_rows import sample_training_set

pytestmark = pytest.mark.usefixtures("one_thread")

# the paper's inputs (Sec. 5.1: GloVe 300; COVAREP 74 and Facet 35 as the CMU SDK gives them) and ours
PAPER_SPEC = ModelSpec(dims={"text": 300, "audio": 74, "visual": 35}, seq_lens={"text": 50, "audio": 50, "visual": 50})
OUR_SPEC = ModelSpec(dims={"text": 384, "audio": 31, "visual": 135}, seq_lens={"text": 50, "audio": 50, "visual": 50})
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4}, seq_lens={"text": 6, "audio": 6, "visual": 6})
SMALL_CFG = {"hidden_size": 24, "regressor_hidden": 24, "dropout": 0.0}
VARIANTS = ["seq2seq", "seq2seq_concat", "seq2seq_concat_out", "seq2seq_concat_both", "seq2seq_hier"]
WIDTH = {"text": 10, "audio": 6, "visual": 4}


def lstm_params(d_in: int, hidden: int) -> int:
    """Parameters of a one-layer PyTorch LSTM (two bias vectors)."""
    return 4 * hidden * (d_in + hidden) + 8 * hidden


def decoder_params(h: int, d_out: int) -> int:
    """The attention decoder: embedding of the previous frame, LSTM over [embedding; context], additive attention
    (keys, query, score), output layer over [state; context]."""
    return (d_out * h + h) + lstm_params(2 * h, h) + h * h + (h * h + h) + h + (2 * h * d_out + d_out)


def grads_of(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Gradient of `loss` for every named parameter (None where it does not reach)."""
    names, params = zip(*model.named_parameters())
    return dict(zip(names, torch.autograd.grad(loss, params, allow_unused=True)))


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers (the standardisers' statistics) of a part."""
    return [v.detach().clone() for v in module.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_the_five_variants_of_section_5_3_are_registered():
    reg = MODELS.load_all()
    configs = {v: reg[v].Config() for v in VARIANTS}
    got = {v: (c.source, c.target, c.hierarchical_target) for v, c in configs.items()}
    assert got == {"seq2seq": (["text"], ["audio"], []),
                   "seq2seq_concat": (["text", "audio"], ["visual"], []),
                   "seq2seq_concat_out": (["text"], ["audio", "visual"], []),
                   "seq2seq_concat_both": (["text", "audio"], ["text", "visual"], []),
                   "seq2seq_hier": (["text"], ["audio"], ["visual"])}
    assert all(reg[v].aligned for v in [*VARIANTS, "word_lstm"])


def test_tables_2_and_3_rows_are_named_ablations():
    assert len(PAPER_ROWS) == 6 + 13                       # Table 2's Seq2Seq rows and Table 3's
    assert PAPER_ROWS["T -> V"] == {"source": ["text"], "target": ["visual"], "hierarchical_target": []}
    assert PAPER_ROWS["embed(V+A) -> T"] == {"source": ["visual"], "target": ["audio"],
                                              "hierarchical_target": ["text"]}
    assert PAPER_ROWS["concat(A+T) -> V"]["source"] == ["audio", "text"]      # the paper's concatenation order
    assert PAPER_ROWS["concat(T+V) -> concat(T+A)"]["target"] == ["text", "audio"]
    assert PAPER_ROWS["A -> concat(T+V)"]["target"] == ["text", "visual"]
    cls = MODELS.get("seq2seq")
    for label, overrides in PAPER_ROWS.items():
        assert cls.ablations[label] == overrides
        model = build_model("seq2seq", SMALL, {**SMALL_CFG, **overrides})
        n_phases = 3 if overrides["hierarchical_target"] else 2
        assert len(model.training_phases()) == n_phases, label


@pytest.mark.parametrize("name", VARIANTS)
def test_translation_phase_decodes_the_target_and_inference_needs_only_the_source(name):
    torch.manual_seed(0)
    model = build_model(name, SMALL, SMALL_CFG)
    cfg = model.config
    batch = random_aligned_batch(SMALL, n=3, steps=5)
    model.train()
    model.set_phase(TRANSLATION)
    out = model(batch)
    assert out.prediction.shape == (3, 1)
    assert out.representations["encoder_states"].shape == (3, 5, 24)
    assert out.extras["translation"].shape == (3, 5, sum(WIDTH[m] for m in cfg.target))
    if cfg.hierarchical_target:
        model.set_phase(TRANSLATION2)
        assert model(batch).extras["translation2"].shape == (3, 5, sum(WIDTH[m] for m in cfg.hierarchical_target))
    model.set_phase(REGRESSION)
    model.eval()
    with torch.no_grad():
        assert "translation" not in model(batch).extras
    source_only = {f"aligned_{m}" for m in cfg.source} | {"aligned_mask"}
    assert model.predict({k: v for k, v in batch.items() if k in source_only}).shape == (3,)
    # a freshly built (or loaded) model is in its last phase: scoring decodes nothing
    assert build_model(name, SMALL, SMALL_CFG).phase == REGRESSION


@pytest.mark.parametrize("name", ["seq2seq", "seq2seq_hier"])
def test_each_phase_moves_only_its_own_level(name):
    torch.manual_seed(0)
    model = build_model(name, SMALL, SMALL_CFG)
    batch = random_aligned_batch(SMALL, n=5, steps=6)
    parts = model.phase_modules()
    phases = model.training_phases()
    assert [p.name for p in phases] == list(parts)
    assert [p.monitor for p in phases] == ["loss:translation", "loss:translation2", ""][: len(phases) - 1] + [""]
    for phase in phases:
        model.train()
        model.set_phase(phase.name)
        (step,) = phase.steps
        assert {id(p) for p in step.parameters} == {id(p) for p in parts[phase.name].parameters()}
        earlier = list(parts)[: list(parts).index(phase.name)]
        assert all(not parts[e].training for e in earlier)           # frozen levels: eval mode (no dropout)
        terms = model.loss_terms(batch, model(batch))
        term = {TRANSLATION: "translation", TRANSLATION2: "translation2", REGRESSION: "task"}[phase.name]
        assert step.terms == (term,) and set(terms) == {"task", term}
        grads = grads_of(model, terms[term])
        prefix = {TRANSLATION: "level1.", TRANSLATION2: "level2.", REGRESSION: "regressor."}[phase.name]
        for n, g in grads.items():
            if n.startswith(prefix):
                assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n
            else:
                assert g is None, n                                  # no other level is even in the graph


def test_bad_configs_and_missing_inputs_are_named():
    with pytest.raises(ConfigError, match="source: unknown modality lidar"):
        build_model("seq2seq", SMALL, {"source": ["lidar"]})
    with pytest.raises(ConfigError, match="uses visual but the dataset has only audio, text"):
        build_model("seq2seq_hier", ModelSpec(dims={"text": 4, "audio": 3}, seq_lens={"text": 5, "audio": 5}))
    with pytest.raises(ConfigError, match="unknown config key"):
        build_model("seq2seq", SMALL, {"translation_epochs": 3})      # phases replaced the epoch switch
    model = build_model("seq2seq", SMALL, SMALL_CFG).train()
    model.set_phase(TRANSLATION)
    batch = random_aligned_batch(SMALL, n=2, steps=6)
    del batch["aligned_audio"]
    with pytest.raises(KeyError, match="aligned_audio"):
        model(batch)
    with pytest.raises(ValueError, match="no training phase 'translation2'"):
        model.set_phase(TRANSLATION2)


def test_parameter_counts_are_the_fidelity_tables():
    """docs/fidelity/seq2seq.md prints these counts; the architecture's formula gives them too."""
    h, r = 128, 64
    for spec, dims in ((PAPER_SPEC, (300, 74, 35)), (OUR_SPEC, (384, 31, 135))):
        d_t, d_a, d_v = dims
        bimodal = lstm_params(d_t, h) + decoder_params(h, d_a) + lstm_params(h, r) + r + 1
        assert count_parameters(build_model("seq2seq", spec)) == bimodal
        hier = bimodal + lstm_params(h, h) + decoder_params(h, d_v)
        assert count_parameters(build_model("seq2seq_hier", spec)) == hier
        assert count_parameters(build_model("word_lstm", spec)) == lstm_params(d_t + d_a + d_v, r) + r + 1
        with_attention = build_model("seq2seq", spec, {"attention_pooling": True})
        assert count_parameters(with_attention) == bimodal + r
    table = parameter_table("seq2seq")
    assert set(table) == {*VARIANTS, "word_lstm"}
    for name, (paper, ours) in table.items():
        assert count_parameters(build_model(name, PAPER_SPEC)) == paper, name
        assert count_parameters(build_model(name, OUR_SPEC)) == ours, name


def test_word_lstm_is_the_regressor_on_the_concatenated_words():
    torch.manual_seed(0)
    model = build_model("word_lstm", SMALL, {"hidden": 8, "dropout": 0.0}).eval()
    batch = random_aligned_batch(SMALL, n=4, steps=6)
    x = torch.cat([batch["aligned_text"], batch["aligned_audio"], batch["aligned_visual"]], -1)   # [w; a; v]
    with torch.no_grad():
        want = model.regressor(x, batch["aligned_mask"])[0].squeeze(-1)
        assert torch.allclose(model.predict(batch), want)
    text_only = build_model("word_lstm", ModelSpec(dims={"text": 10}, seq_lens={"text": 6}), {"hidden": 8})
    assert text_only.used == ["text"]
    with pytest.raises(ConfigError, match="uses audio but the dataset has only text"):
        build_model("word_lstm", ModelSpec(dims={"text": 10}, seq_lens={"text": 6}), {"modalities": ["audio"]})


def test_trainer_runs_alg_2_phases_in_order_and_frozen_levels_do_not_change(sample_cache, tmp_path):
    """On the real sample clips: translation, translation2, regression, each its own epochs, monitor and best
    epoch; a level never changes after its phase, and the next phase starts from that phase's best weights."""
    data = sample_training_set(sample_cache, aligned=True)
    torch.manual_seed(0)
    model = build_model("seq2seq_hier", ModelSpec(dims=dict(data.dims), seq_lens=dict(data.seq_lens)),
                        {"hidden_size": 32, "regressor_hidden": 16})
    cfg = TrainConfig.from_dict({"epochs": 4, "batch_size": 4, "lr": 3e-3, "patience": 0, "seed": 0,
                                 "checkpoint_every": 1000, "phases": {"regression": {"epochs": 6}}})
    trainer = Trainer(model, data, cfg, tmp_path / "run", torch.device("cpu"))
    seen: list[tuple[str, dict[str, list[torch.Tensor]]]] = []
    initial = {n: snapshot(m) for n, m in model.phase_modules().items()}
    trainer.fit(on_epoch=lambda rec: seen.append((rec["phase"], {n: snapshot(m) for n, m in
                                                                  model.phase_modules().items()})))
    assert [p for p, _ in seen] == [TRANSLATION] * 4 + [TRANSLATION2] * 4 + [REGRESSION] * 6
    summary = trainer.write_summary()
    assert [(p["name"], p["monitor"], p["epochs"]) for p in summary["phases"]] == [
        (TRANSLATION, "loss:translation", 4), (TRANSLATION2, "loss:translation2", 4), (REGRESSION, "mae", 6)]
    history = trainer.state["history"]
    assert set(history[0]["train"]) == {"task", "translation", "total"}
    assert set(history[4]["train"]) == {"task", "translation2", "total"}
    assert set(history[8]["train"]) == {"task", "total"}
    by_phase = {ph: [s for p, s in seen if p == ph] for ph in (TRANSLATION, TRANSLATION2, REGRESSION)}
    # nothing trains a part before its phase
    assert all(same(s["translation2"], initial["translation2"]) for s in by_phase[TRANSLATION])
    assert all(same(s["regression"], initial["regression"]) for s in by_phase[TRANSLATION] + by_phase[TRANSLATION2])
    # after its phase a level is frozen at that phase's best epoch
    best1 = summary["phases"][0]["best_epoch"]
    level1 = by_phase[TRANSLATION][best1 - 1]["translation"]
    assert all(same(s["translation"], level1) for s in by_phase[TRANSLATION2] + by_phase[REGRESSION])
    best2 = summary["phases"][1]["best_epoch"]
    level2 = by_phase[TRANSLATION2][best2 - 1]["translation2"]
    assert all(same(s["translation2"], level2) for s in by_phase[REGRESSION])
    assert not same(by_phase[REGRESSION][-1]["regression"], initial["regression"])
    translation = [h["train"]["translation"] for h in history[:4]]
    assert translation[-1] < translation[0]


@pytest.mark.parametrize("name", ["seq2seq", "seq2seq_hier", "word_lstm"])
def test_overfits_the_real_sample_clips(name, sample_cache, tmp_path):
    """Translation phases, then the regressor on the frozen encoders, reach a low train MAE on the 10 clips."""
    data = sample_training_set(sample_cache, aligned=True)
    torch.manual_seed(0)
    model = build_model(name, ModelSpec(dims=dict(data.dims), seq_lens=dict(data.seq_lens)), {"dropout": 0.0})
    phases = {} if name == "word_lstm" else {"regression": {"epochs": 60}}     # the baseline has one phase
    cfg = TrainConfig.from_dict({"epochs": 5 if phases else 40, "batch_size": 10, "lr": 1e-2, "patience": 0,
                                 "seed": 0, "weight_decay": 0.0, "schedule": "constant", "checkpoint_every": 1000,
                                 "phases": phases})
    trainer = Trainer(model, data, cfg, tmp_path / "run", torch.device("cpu"))
    trainer.fit()
    summary = trainer.write_summary()
    mae = summary["metrics"]["train"]["mae"]
    assert mae < 0.1, f"{name}: train MAE {mae:.3f} on the {len(data.splits['train'])} sample clips"


@pytest.mark.gpu
@pytest.mark.parametrize("name", [*VARIANTS, "word_lstm", "mctn"])
def test_trains_a_step_on_cuda(name):
    """Every tensor the aligned translation models create lands on the batch's device."""
    dev = torch.device("cuda")
    cfg = {"hidden": 8} if name == "word_lstm" else {"hidden_size": 24, "regressor_hidden": 24}
    model = build_model(name, SMALL, cfg).to(dev).train()
    for phase in model.training_phases():
        model.set_phase(phase.name)
        batch = {k: v.to(dev) for k, v in random_aligned_batch(SMALL, n=4, steps=6).items()}
        terms = model.loss_terms(batch, model(batch))
        sum(terms[t] for t in phase.steps[0].terms or terms).backward()
        assert all(torch.isfinite(t) for t in terms.values())
    assert model.eval().predict(batch).device.type == "cuda"
