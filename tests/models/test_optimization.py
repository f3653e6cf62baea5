"""What the recipes need from the trainer: per-group learning rates, warm-up and schedules, alternating updates,
sequential phases with frozen parts, and recipes as data."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from models.base import ModelOutput, ModelSpec, OptimStep, SentimentModel, TrainingPhase
from models.data import PackedDataset, PackedSplit
from models.optimization import TrainConfig, build_optimizer, build_schedule, parameter_names, plateau_step
from models.recipes import RECIPES_DIR, apply_recipe, load_recipe, recipe_names
from models.registry import MODELS, build_model
from models.trainer import Trainer
from models.training import RunOptions
from pipeline.config import ConfigBase, ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = ModelSpec(dims={"text": 6}, seq_lens={"text": 4})


@dataclass
class TwoPartConfig(ConfigBase):
    phases: bool = False      # True: phase "first" trains `first` on "aux"; phase "second" trains `second` on task
    alternate: bool = False   # True: one phase, two updates per batch (first on "aux", then second on "task")


class TwoPart(SentimentModel):
    """Two independent parts: `first` is judged by an auxiliary loss, `second` predicts the label."""

    name = "two_part"
    Config = TwoPartConfig

    def __init__(self, config: TwoPartConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        self.first = nn.Linear(6, 6)
        self.second = nn.Linear(6, 1)
        self.phase_calls: list[str] = []

    def forward(self, batch):
        x = batch["text"].mean(1)
        return ModelOutput(self.second(x), {"aux": self.first(x)})

    def loss_terms(self, batch, output):
        x = batch["text"].mean(1)
        return {"task": self.task_loss(output.prediction, batch["label"]),
                "aux": ((output.representations["aux"] - 2 * x) ** 2).mean()}

    def training_phases(self):
        first = OptimStep("first", list(self.first.parameters()), ("aux",))
        second = OptimStep("second", list(self.second.parameters()), ("task",))
        if self.config.phases:
            return [TrainingPhase("first", [first], monitor="loss:aux"), TrainingPhase("second", [second])]
        if self.config.alternate:
            return [TrainingPhase("main", [first, second])]
        return super().training_phases()

    def set_phase(self, name: str) -> None:
        self.phase_calls.append(name)


def data(n: int = 24) -> PackedDataset:
    g = torch.Generator().manual_seed(0)

    def split(rows: int) -> PackedSplit:
        text = torch.randn(rows, 4, 6, generator=g)
        label = text.mean((1, 2)) * 3
        return PackedSplit({"text": text, "text_mask": torch.ones(rows, 4), "present": torch.ones(rows, 3),
                            "label": label, "index": torch.arange(rows)}, [f"r{i}" for i in range(rows)])

    return PackedDataset({"train": split(n), "valid": split(8)}, ["text"], {"text": 6}, {"text": 4})


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_param_groups_take_their_learning_rate_by_name():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    cfg = TrainConfig.from_dict({"lr": 1e-3, "weight_decay": 0.01,
                                "param_groups": [{"match": r"^1\.", "lr": 2e-5, "weight_decay": 0.0}]})
    opt = build_optimizer(OptimStep("main", list(model.parameters())), cfg, cfg.lr, parameter_names(model))
    by_lr = {g["lr"]: (g["weight_decay"], sum(p.numel() for p in g["params"])) for g in opt.param_groups}
    assert by_lr == {1e-3: (0.01, 6), 2e-5: (0.0, 3)}
    assert isinstance(opt, torch.optim.AdamW)
    assert isinstance(build_optimizer(OptimStep("m", list(model.parameters())), TrainConfig(optimizer="adam"), 1.0,
                                      {}), torch.optim.Adam)


class _Stack(nn.Module):
    """A BERT-like parameter layout: embeddings and encoder.layer.0..2."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(5, 2)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))


def test_layer_decay_scales_each_groups_rate_by_depth_below_the_top_layer():
    model = nn.Sequential()
    model.add_module("text_encoder", _Stack())
    model.add_module("head", nn.Linear(2, 1))
    cfg = TrainConfig.from_dict({"lr": 1e-3, "layer_decay": {"factor": 0.5},
                                "param_groups": [{"match": r"^text_encoder\..*bias$", "lr": 4e-5, "weight_decay": 0.0},
                                                 {"match": r"^text_encoder\.(embeddings|encoder)", "lr": 4e-5}]})
    opt = build_optimizer(OptimStep("main", list(model.parameters())), cfg, cfg.lr, parameter_names(model))
    got = sorted((g["lr"], g["weight_decay"], sum(p.numel() for p in g["params"])) for g in opt.param_groups)
    assert got == sorted([(4e-5, 0.0, 2), (4e-5, 0.01, 4),          # layer 2 (the top): the group's own rate
                          (2e-5, 0.0, 2), (2e-5, 0.01, 4),          # layer 1
                          (1e-5, 0.0, 2), (1e-5, 0.01, 4),          # layer 0
                          (5e-6, 0.01, 10),                         # embeddings: one step below layer 0
                          (1e-3, 0.01, 3)])                         # the head: no layer, no decay
    assert TrainConfig.from_dict({}).layer_decay.depth_rates(list(parameter_names(model).values())) == {}


@pytest.mark.parametrize("decay, message", [({"factor": 0.0}, "factor must be in (0, 1]"),
                                            ({"factor": 1.5}, "factor must be in (0, 1]"),
                                            ({"layers": r"layer\.\d+"}, "captures the layer index"),
                                            ({"below": "("}, "layer_decay.below is not a regular expression")])
def test_bad_layer_decay_is_refused_by_name(decay, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig.from_dict({"layer_decay": decay}).validate()


def lrs(schedule: str, warmup: float, epochs: int = 4, per_epoch: int = 5, min_lr: float = 0.0) -> list[float]:
    p = nn.Parameter(torch.zeros(1))
    cfg = TrainConfig(lr=1.0, schedule=schedule, warmup=warmup, epochs=epochs, min_lr=min_lr)
    opt = build_optimizer(OptimStep("m", [p]), cfg, 1.0, {})
    sched = build_schedule(opt, cfg, cfg.phase("main"), per_epoch)
    out = []
    for _ in range(epochs * per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_warm_up_then_linear_decay_per_step():
    got = lrs("linear", warmup=0.25)            # 20 steps, 5 of warm-up
    assert got[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert got[5:] == pytest.approx([1 - i / 15 for i in range(15)])


def test_cosine_holds_each_epoch_and_matches_torch_per_epoch_annealing():
    got = lrs("cosine", warmup=0.0, min_lr=0.1)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    want = []
    for _ in range(4):
        want += [opt.param_groups[0]["lr"]] * 5
        opt.step()
        ref.step()
    assert got == pytest.approx(want)


def test_plateau_lowers_every_learning_rate_after_its_patience():
    p = nn.Parameter(torch.zeros(1))
    cfg = TrainConfig(lr=1.0, schedule="plateau", plateau_patience=2, plateau_factor=0.5)
    opt = build_optimizer(OptimStep("m", [p]), cfg, 1.0, {})
    sched = build_schedule(opt, cfg, cfg.phase("m"), 3)
    assert not plateau_step({"m": sched}, cfg, 1)
    assert plateau_step({"m": sched}, cfg, 2)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_an_update_moves_only_its_own_parameters(tmp_path):
    torch.manual_seed(0)
    model = TwoPart(TwoPartConfig(alternate=True), SPEC)
    trainer = Trainer(model, data(), TrainConfig(epochs=1, batch_size=8, lr=0.1), tmp_path, torch.device("cpu"))
    batch = trainer.splits["train"].batch(torch.arange(8))
    first, second = snapshot(model.first), snapshot(model.second)
    trainer._update(trainer.phase.steps[0], batch, 0)         # the "first" update: aux loss only
    assert not same(first, snapshot(model.first)) and same(second, snapshot(model.second))
    first = snapshot(model.first)
    trainer._update(trainer.phase.steps[1], batch, 0)         # the "second" update: task loss only
    assert same(first, snapshot(model.first)) and not same(second, snapshot(model.second))
    assert set(trainer.optimizers) == {"first", "second"}


def test_phases_run_in_order_with_their_own_epochs_monitor_and_frozen_parts(tmp_path):
    torch.manual_seed(0)
    model = TwoPart(TwoPartConfig(phases=True), SPEC)
    cfg = TrainConfig.from_dict({"epochs": 6, "batch_size": 8, "lr": 0.05, "patience": 0,
                                "phases": {"first": {"epochs": 3}}})
    trainer = Trainer(model, data(), cfg, tmp_path, torch.device("cpu"))
    seen: list[tuple[str, list[torch.Tensor]]] = []
    trainer.fit(on_epoch=lambda record: seen.append((record["phase"], snapshot(model.first))))
    phases = [p for p, _ in seen]
    assert phases == ["first"] * 3 + ["second"] * 6
    # phase "second" never moves `first`, which starts from phase "first"'s best epoch (by validation aux loss)
    after_first = [s for p, s in seen if p == "second"]
    assert all(same(after_first[0], s) for s in after_first)
    summary = trainer.write_summary()
    assert [p["name"] for p in summary["phases"]] == ["first", "second"]
    assert summary["phases"][0]["monitor"] == "loss:aux" and summary["phases"][1]["monitor"] == "mae"
    assert summary["epochs_run"] == 9
    aux = [h["valid_loss"]["aux"] for h in trainer.state["history"] if h["phase"] == "first"]
    assert aux[-1] < aux[0]
    assert model.phase_calls[0] == "first" and "second" in model.phase_calls


def test_resuming_in_the_second_phase_continues_the_same_curve(tmp_path):
    def curve(run, stop=None, resume=False):
        torch.manual_seed(1)
        model = TwoPart(TwoPartConfig(phases=True), SPEC)
        cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, patience=0, seed=4)
        trainer = Trainer(model, data(), cfg, run, torch.device("cpu"))
        trainer.fit(resume=resume, max_epochs_this_call=stop)
        return [h["train"]["total"] for h in trainer.state["history"]]

    straight = curve(tmp_path / "a")
    assert len(curve(tmp_path / "b", stop=4)) == 4             # stops one epoch into phase two
    assert curve(tmp_path / "b", resume=True) == straight


def test_settings_naming_an_unknown_phase_or_update_are_refused(tmp_path):
    model = TwoPart(TwoPartConfig(), SPEC)
    with pytest.raises(ConfigError, match="train.phases names translation, but two_part trains in phases main"):
        Trainer(model, data(), TrainConfig.from_dict({"phases": {"translation": {"epochs": 2}}}), tmp_path,
                torch.device("cpu"))
    with pytest.raises(ConfigError, match="train.steps names discriminator"):
        Trainer(model, data(), TrainConfig.from_dict({"steps": {"discriminator": {"lr": 1e-4}}}), tmp_path,
                torch.device("cpu"))
    with pytest.raises(ConfigError, match="train.warmup"):
        TrainConfig(warmup=1.5).validate()


def test_a_loss_monitor_selects_the_epoch_with_the_lowest_validation_loss(tmp_path):
    torch.manual_seed(0)
    model = TwoPart(TwoPartConfig(), SPEC)
    trainer = Trainer(model, data(), TrainConfig(epochs=5, batch_size=8, lr=0.05, monitor="loss:task", patience=0),
                      tmp_path, torch.device("cpu"))
    state = trainer.fit()
    task_losses = [h["valid_loss"]["task"] for h in state["history"]]
    assert state["best"] == pytest.approx(min(task_losses))
    assert state["best_epoch"] == task_losses.index(min(task_losses)) + 1


def test_recipe_options_are_overridden_key_by_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: a test\ntrain: {lr: 2.0e-5, epochs: 40, warmup: 0.1}\ntask: {loss: mse}\n")
    merged = apply_recipe("unimodal", str(recipe), {"train": {"epochs": 3}})
    assert merged == {"train": {"lr": 2e-5, "epochs": 3, "warmup": 0.1}, "task": {"loss": "mse"}}
    assert apply_recipe("unimodal", None, {"train": {"epochs": 3}}) == {"train": {"epochs": 3}}
    with pytest.raises(ConfigError, match="unknown recipe 'paper:nowhere' for model unimodal"):
        load_recipe("unimodal", "paper:nowhere")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian: {lr: 1}\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_recipe("unimodal", str(bad))


def test_every_shipped_recipe_is_valid_for_its_model():
    files = sorted(RECIPES_DIR.glob("*.yaml"))
    assert len(files) >= 5, f"the papers' recipes are missing from {RECIPES_DIR}"
    for f in files:
        model = f.stem
        assert model in MODELS, f"{f.name}: no model named {model}"
        for name in recipe_names(model):
            recipe = load_recipe(model, name)
            assert recipe.get("source"), f"{f.name}: recipe {name} does not say where its numbers come from"
            opts = RunOptions.from_dict(apply_recipe(model, name, {}), where=f"{f.name}:{name}")
            opts.train.validate()
            spec = ModelSpec(dims={"text": 16, "audio": 8, "visual": 4}, seq_lens={"text": 6, "audio": 6, "visual": 6})
            build_model(model, spec, opts.model)


def test_a_variant_trains_with_the_recipes_it_is_the_same_as(tmp_path, monkeypatch):
    assert recipe_names("seq2seq_hier") == recipe_names("word_lstm") == ["paper:mosi"]
    assert load_recipe("seq2seq_concat_both", "paper:mosi") == load_recipe("seq2seq", "paper:mosi")
    import models.recipes as recipes

    monkeypatch.setattr(recipes, "RECIPES_DIR", tmp_path)
    (tmp_path / "a.yaml").write_text("same_as: b\n")
    (tmp_path / "b.yaml").write_text("same_as: a\n")
    (tmp_path / "c.yaml").write_text("same_as: b\npaper:x: {source: s}\n")
    with pytest.raises(ConfigError, match="must be the file's only entry and name another model's recipes"):
        recipe_names("a")
    with pytest.raises(ConfigError, match="only entry"):
        recipe_names("c")
