"""VAE-AMDT against its paper: Table 2's shapes and parameter counts, each loss term by hand, where the
gradients go, the two-update adversarial game, masked modalities, the ablation rows and the modality subsets."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.data import PackedDataset, PackedSplit
from models.optimization import TrainConfig
from models.registry import build_model, get_model_class
from models.trainer import Trainer
from models.zoo.vae_amdt import VAEAMDTConfig, pooled_attention, vae_loss
from pipeline.config import ConfigError
from tests.helpers.batches import random_batch

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[3]
FIDELITY = ROOT / "docs" / "fidelity" / "vae_amdt.md"

# Table 2's input sizes: V 64 x 8, L 100 x 1024, A 128 x 128
TABLE2 = ModelSpec(dims={"text": 1024, "audio": 128, "visual": 8}, seq_lens={"text": 100, "audio": 128, "visual": 64})
# SentiFlow's default features: MiniLM-L6 text (384), 128-bin log-mel, FER2013 embeddings (135)
OURS = ModelSpec(dims={"text": 384, "audio": 128, "visual": 135}, seq_lens={"text": 100, "audio": 128, "visual": 64})
SMALL = ModelSpec(dims={"text": 12, "audio": 6, "visual": 4}, seq_lens={"text": 7, "audio": 9, "visual": 5})
TINY = {"hidden": 8, "latent": 4, "vae_hidden": 16, "adversary_hidden": 8}

# the fidelity table's parameter rows: label -> (model, options, spec)
PARAMETER_ROWS = {
    "MOSI, Table 2 inputs": ("vae_amdt", VAEAMDTConfig.preset("mosi").to_dict(), TABLE2),
    "MOSEI, Table 2 inputs": ("vae_amdt", VAEAMDTConfig.preset("mosei").to_dict(), TABLE2),
    "MOSI, SentiFlow features": ("vae_amdt", VAEAMDTConfig.preset("mosi").to_dict(), OURS),
    "MOSEI, SentiFlow features": ("vae_amdt", VAEAMDTConfig.preset("mosei").to_dict(), OURS),
    "MOSI, text only (Table 8), SentiFlow features": (
        "vae_amdt", {}, ModelSpec(dims={"text": 384}, seq_lens={"text": 100})),
    "vae_amdt_small, SentiFlow features": ("vae_amdt_small", {}, OURS),
}


def batch_of(spec: ModelSpec, n: int = 6, seed: int = 0, absent: bool = True) -> dict[str, torch.Tensor]:
    """Random features, ragged masks; with `absent`, rows 1-3 lack audio / visual / both."""
    return random_batch(spec, n, seed, absent={1: ["audio"], 2: ["visual"], 3: ["audio", "visual"]} if absent
                        else {})


def shapes_through_hooks(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """Input and output shapes of every stage of the paper's Table 2, read by forward hooks."""
    seen: dict[str, tuple] = {}

    def hook(name):
        def record(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            seen[name] = (tuple(args[0].shape), tuple(out.shape))
        return record

    stages = {f"f_m.{m}": model.f_m[m] for m in model.used}
    stages.update({f"f_s.{k}": v for k, v in model.f_s.items()})
    stages.update({f"encoder.{m}": model.encoders[m].enc for m in model.encoders})
    stages.update({f"mu.{m}": model.encoders[m].mu for m in model.encoders})
    stages.update({"triple": model.triple, "f_r": model.f_r} if model.triple is not None else {"f_r": model.f_r})
    handles = [module.register_forward_hook(hook(name)) for name, module in stages.items()]
    try:
        model(batch)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("preset,d", [("mosi", 128), ("mosei", 64)])
def test_table2_shapes_row_by_row(preset, d):
    torch.manual_seed(0)
    model = build_model("vae_amdt", TABLE2, VAEAMDTConfig.preset(preset).to_dict()).eval()
    b = 2
    seen = shapes_through_hooks(model, batch_of(TABLE2, b, absent=False))
    # f_m: V (B, 64, 8) -> (B, 64, D); L (B, 100, 1024) -> (B, 100, D); A (B, 128, 128) -> (B, 128, D)
    assert seen["f_m.visual"] == ((b, 64, 8), (b, 64, d))
    assert seen["f_m.text"] == ((b, 100, 1024), (b, 100, d))
    assert seen["f_m.audio"] == ((b, 128, 128), (b, 128, d))
    # self attention (B, D) per modality; cross attention (B, D) per direction, all six directions
    vectors = {k for k in seen if k.startswith("f_s.")}
    assert vectors == {f"f_s.{q}_to_{m}" for m in ("text", "audio", "visual") for q in ("text", "audio", "visual")}
    assert all(seen[k] == ((b, d), (b, d)) for k in vectors)
    # the VAEs' input x_v, x_l, x_a: (B, 3D) = (B, 384) MOSI, (B, 192) MOSEI; their means (B, 32)
    assert all(seen[f"encoder.{m}"][0] == (b, 3 * d) for m in ("text", "audio", "visual"))
    assert all(seen[f"mu.{m}"][1] == (b, 32) for m in ("text", "audio", "visual"))
    # triple attention (B, 3, 32) -> (B, 32); the linear regressor f_r: (B, 32) -> (B, 1)
    assert seen["triple"] == ((b, 3, 32), (b, 32))
    assert seen["f_r"] == ((b, 32), (b, 1))


def fidelity_counts() -> dict[str, int]:
    """The parameter rows the fidelity table prints: label -> SentiFlow's count."""
    rows = {}
    for line in FIDELITY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in PARAMETER_ROWS:
            rows[cells[0]] = int(cells[-1].replace(",", ""))
    return rows


def test_parameter_counts_are_exact_and_the_fidelity_table_prints_them():
    printed = fidelity_counts()
    assert set(printed) == set(PARAMETER_ROWS), "docs/fidelity/vae_amdt.md lacks parameter rows"
    for label, (name, options, spec) in PARAMETER_ROWS.items():
        assert count_parameters(build_model(name, spec, options)) == printed[label], label
    # against the paper's totals (Table 2: 3.3M MOSI, 1.7M MOSEI)
    assert printed["MOSI, Table 2 inputs"] == 3_287_138                # 0.4% under 3.3M
    assert printed["MOSEI, Table 2 inputs"] == 1_810_146               # 6.5% over 1.7M (see the table's note)
    # our features change only the input projections f_m
    mosi = build_model("vae_amdt", OURS, {})
    assert sum(p.numel() for p in mosi.f_m.parameters()) == 384 * 128 + 128 * 128 + 135 * 128 + 3 * 128


def test_pooled_attention_is_equation_2_and_3_by_hand():
    """softmax(X X^T) X, mean over the valid query steps; a padded key step gets no weight."""
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])                  # the third step is padding
    pooled, alpha = pooled_attention(x, x, mask, mask)
    e = math.e
    w = torch.tensor([[e / (e + 1), 1 / (e + 1)], [1 / (e + 1), e / (e + 1)]])   # softmax of [[1, 0], [0, 1]]
    torch.testing.assert_close(alpha[0, :2, :2], w)
    assert float(alpha[0, :, 2].abs().sum()) == 0.0
    rows = w @ x[0, :2]                                     # alpha . X for the two valid query steps
    torch.testing.assert_close(pooled[0], rows.mean(0))
    # no scale: doubling X sharpens the softmax (Eq. 2 has no 1/sqrt(D))
    _, sharper = pooled_attention(2 * x, 2 * x, mask, mask)
    assert sharper[0, 0, 0] > alpha[0, 0, 0]
    # an empty row (modality absent) gives zeros, not NaN
    empty, _ = pooled_attention(x, x, torch.zeros(1, 3), torch.zeros(1, 3))
    assert torch.equal(empty, torch.zeros(1, 2))


def test_vae_loss_by_hand():
    """beta KL(N(mu, sigma^2) || N(0, 1)) + 0.5 ||recon - x||^2, summed over dims, per clip."""
    x = torch.tensor([[1.0, 2.0]])
    recon = torch.tensor([[0.0, 0.0]])
    mu = torch.tensor([[0.0, 1.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # KL per dim: 0.5 (sigma^2 + mu^2 - 1 - log sigma^2) = 0 and 0.5 (4 + 1 - 1 - log 4)
    kl = 0.5 * (4 + 1 - 1 - math.log(4.0))
    assert float(vae_loss(x, recon, mu, logvar, 0.5)) == pytest.approx(0.5 * kl + 0.5 * 5.0)


@torch.no_grad()
def test_each_loss_term_equals_the_paper_by_hand():
    """Eq. 14's terms on a tiny batch: alpha MSE, beta sum_m L_vae, gamma (L_v^G + L_a^G), gamma L^D."""
    torch.manual_seed(0)
    spec = ModelSpec(dims=SMALL.dims, seq_lens=SMALL.seq_lens, loss="mse")
    model = build_model("vae_amdt", spec, {**TINY, "alpha": 2.0, "beta": 3.0, "gamma": 0.5})
    model.eval()            # mu = z: the decoder input is deterministic
    batch = batch_of(SMALL, absent=False)
    out = model(batch)
    terms = model.loss_terms(batch, out)
    assert set(terms) == {"task", "vae", "generator", "discriminator"}
    ex = out.extras
    assert float(terms["task"]) == pytest.approx(2.0 * float(((out.prediction[:, 0] - batch["label"]) ** 2).mean()))
    vae = 0.0
    for i, m in enumerate(("text", "audio", "visual")):
        onehot = torch.zeros(1, 3)
        onehot[0, i] = 1.0
        x, mu, logvar = ex["x"][m], ex["mu"][m], ex["logvar"][m]
        recon = model.encoders[m].dec(torch.cat([mu, onehot.expand(len(mu), 3)], -1))
        kl = 0.5 * (logvar.exp() + mu ** 2 - 1 - logvar).sum(1)
        vae += float((0.5 * kl + 0.5 * ((recon - x) ** 2).sum(1)).mean())
    assert float(terms["vae"]) == pytest.approx(3.0 * vae, rel=1e-5)
    d = lambda v: torch.sigmoid(model.discriminator(v)).squeeze(-1)          # noqa: E731
    fake = {m: model.generators[m](ex["mu"][m]) for m in ("audio", "visual")}
    generator = sum(-torch.log(d(fake[m])).mean() for m in fake)
    discriminator = -torch.log(d(ex["mu"]["text"])).mean() - sum(torch.log(1 - d(fake[m])).mean() for m in fake)
    assert float(terms["generator"]) == pytest.approx(0.5 * float(generator), rel=1e-5)
    assert float(terms["discriminator"]) == pytest.approx(0.5 * float(discriminator), rel=1e-5)


def grad_norms(model: torch.nn.Module, term: torch.Tensor) -> dict[str, float]:
    """Per top-level module of the model, the summed |gradient| `term` sends there."""
    named = [(n, p) for n, p in model.named_parameters()]
    grads = torch.autograd.grad(term, [p for _, p in named], retain_graph=True, allow_unused=True)
    out: dict[str, float] = {}
    for (n, _), g in zip(named, grads):
        parts = n.split(".")
        key = ".".join(parts[:3]) if parts[0] == "encoders" else ".".join(parts[:2])
        out[key] = out.get(key, 0.0) + (0.0 if g is None else float(g.abs().sum()))
    return out


def test_gradients_reach_what_each_term_trains_and_nothing_else():
    torch.manual_seed(0)
    model = build_model("vae_amdt", SMALL, TINY).train()
    batch = batch_of(SMALL, absent=False)
    out = model(batch)
    terms = model.loss_terms(batch, out)
    reached = {k: {m for m, v in grad_norms(model, t).items() if v > 0} for k, t in terms.items()}
    # the discriminator's BCE (detached inputs) trains the discriminator alone
    assert reached["discriminator"] == {"discriminator.0", "discriminator.2"}
    # the task loss flows through f_r, the triple attention, the VAE means, f_s and f_m; not G, D, decoder, logvar
    assert {"f_r.weight", "triple.f_s", "encoders.text.mu", "encoders.audio.enc", "f_s.audio_to_text",
            "f_m.visual"} <= reached["task"]
    assert not any(k.startswith(("generators", "discriminator")) or ".dec" in k or ".logvar" in k
                   for k in reached["task"])
    # L_vae trains encoders, decoders (and the attention under x_m), never G, D or the regressor
    assert {"encoders.text.dec", "encoders.visual.logvar", "f_m.text"} <= reached["vae"]
    assert not any(k.startswith(("generators", "discriminator", "f_r", "triple")) for k in reached["vae"])
    # the generators' BCE trains the generators and what makes mu_v, mu_a (x_a and x_v attend with text queries,
    # so f_m.text is reached), never the text VAE or the vectors that make up x_l
    assert {"generators.audio", "generators.visual", "encoders.audio.mu", "f_m.visual"} <= reached["generator"]
    assert not any(k.startswith("encoders.text") or k.endswith("_to_text") for k in reached["generator"])


def test_the_prediction_changes_when_the_latent_means_change():
    """The VAE means carry the prediction (V-A3): shifting mu_l moves the score; nothing bypasses them."""
    torch.manual_seed(0)
    model = build_model("vae_amdt", SMALL, TINY).eval()
    batch = batch_of(SMALL, absent=False)
    base = model(batch).prediction
    handle = model.encoders["text"].mu.register_forward_hook(lambda mod, args, out: out + 1.0)
    try:
        moved = model(batch).prediction
    finally:
        handle.remove()
    assert (moved - base).abs().min() > 1e-4
    # with mu fixed, the attention below it cannot reach the score: zero the encoders' mean layers' output
    for m in model.used:
        model.encoders[m].mu.register_forward_hook(lambda mod, args, out: torch.zeros_like(out))
    changed = {k: v.clone() for k, v in batch.items()}
    changed["text"] = changed["text"] + 3.0
    torch.testing.assert_close(model(changed).prediction, model(batch).prediction)


def tiny_dataset(n: int = 16) -> PackedDataset:
    def split(rows: int, seed: int) -> PackedSplit:
        b = batch_of(SMALL, rows, seed, absent=False)
        b["present"] = torch.ones(rows, 3)
        b["index"] = torch.arange(rows)
        return PackedSplit(b, [f"r{i}" for i in range(rows)])

    return PackedDataset({"train": split(n, 1), "valid": split(8, 2)}, list(SMALL.dims), dict(SMALL.dims),
                         dict(SMALL.seq_lens))


def snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def moved(before: list[torch.Tensor], params) -> bool:
    return any(not torch.equal(a, p.detach()) for a, p in zip(before, params))


def test_two_updates_per_batch_the_discriminator_step_never_moves_the_generators(tmp_path):
    """Eq. 13 as a min-max game: D's step moves only D; the model's step moves everything but D."""
    torch.manual_seed(0)
    model = build_model("vae_amdt", SMALL, TINY)
    phases = model.training_phases()
    assert [(p.name, [s.name for s in p.steps]) for p in phases] == [("main", ["discriminator", "model"])]
    d_step, g_step = phases[0].steps
    assert d_step.terms == ("discriminator",) and g_step.terms == ("task", "vae", "generator")
    d_params = list(model.discriminator.parameters())
    assert {id(p) for p in d_step.parameters} == {id(p) for p in d_params}
    assert not {id(p) for p in g_step.parameters} & {id(p) for p in d_params}
    assert len(d_step.parameters) + len(g_step.parameters) == len(list(model.parameters()))
    trainer = Trainer(model, tiny_dataset(), TrainConfig(epochs=1, batch_size=8, lr=1e-2, grad_clip=0.0),
                      tmp_path, torch.device("cpu"))
    batch = trainer.splits["train"].batch(torch.arange(8))
    others = [p for p in model.parameters() if id(p) not in {id(q) for q in d_params}]
    d_before, g_before = snapshot(d_params), snapshot(others)
    trainer._update(trainer.phase.steps[0], batch, 0)
    assert moved(d_before, d_params) and not moved(g_before, others)
    d_before, g_before = snapshot(d_params), snapshot(others)
    trainer._update(trainer.phase.steps[1], batch, 0)
    assert not moved(d_before, d_params) and moved(g_before, model.generators.parameters())


def test_alternating_training_lowers_the_discriminator_loss_against_fixed_generators(tmp_path):
    """D's own step learns: a few D updates lower its BCE on the same batch."""
    torch.manual_seed(0)
    model = build_model("vae_amdt", SMALL, TINY)
    trainer = Trainer(model, tiny_dataset(), TrainConfig(epochs=1, batch_size=16, lr=1e-2), tmp_path,
                      torch.device("cpu"))
    batch = trainer.splits["train"].batch(torch.arange(16))

    @torch.no_grad()
    def d_loss() -> float:
        model.eval()
        return float(model.loss_terms(batch, model(batch))["discriminator"])

    first = d_loss()
    for _ in range(20):
        trainer._update(trainer.phase.steps[0], batch, 0)
    assert d_loss() < first


def test_masked_modalities_do_not_change_other_samples_or_give_nan():
    torch.manual_seed(0)
    model = build_model("vae_amdt", SMALL, TINY).eval()
    batch = batch_of(SMALL)
    out = model(batch)
    assert torch.isfinite(out.prediction).all()
    assert all(torch.isfinite(t) for t in model.loss_terms(batch, out).values())
    changed = {k: v.clone() for k, v in batch.items()}
    changed["audio"][3] += 100.0          # row 3 is text only: its audio and visual are masked out
    changed["visual"][3] -= 50.0
    changed["audio"][0] += 1.0            # row 0 has everything
    again = model(changed).prediction
    torch.testing.assert_close(again[3], out.prediction[3])
    assert not torch.allclose(again[0], out.prediction[0])
    # a missing modality's VAE mean is a masked row of the triple attention
    model.collect_insights = True
    shares = model(batch).extras["modality_attention"]
    assert float(shares["audio"][1]) == 0.0 and float(shares["visual"][2]) == 0.0
    torch.testing.assert_close(sum(shares.values()), torch.ones(6))


@pytest.mark.parametrize("code", ["T", "A", "V", "TA", "TV", "AV", "TAV"])
def test_every_modality_subset_of_table8_builds_and_trains(code):
    names = {"T": "text", "A": "audio", "V": "visual"}
    mods = [names[c] for c in code]
    spec = ModelSpec(dims={m: SMALL.dims[m] for m in mods}, seq_lens={m: SMALL.seq_lens[m] for m in mods})
    torch.manual_seed(0)
    model = build_model("vae_amdt", spec, TINY).train()
    batch = random_batch(spec, 4, 0)
    out = model(batch)
    terms = model.loss_terms(batch, out)
    adversarial = "text" in mods and len(mods) > 1      # the game needs the linguistic target and a source
    assert set(terms) == {"task", "vae"} | ({"generator", "discriminator"} if adversarial else set())
    assert model.encoders[mods[0]].enc[0].in_features == TINY["hidden"] * len(mods)   # x_m: D per modality
    assert out.representations["fused"].shape == (4, TINY["latent"] * len(mods))
    assert len(model.training_phases()[0].steps) == (2 if adversarial else 1)
    sum(terms.values()).backward()


def test_ablation_rows_of_tables_4_and_7():
    cls = get_model_class("vae_amdt")
    assert set(cls.ablations) == {"w/o VAE-AMDT", "self-attention", "(self, cross)-attention"}
    b = 2
    batch = batch_of(TABLE2, b, absent=False)
    widths = {"w/o VAE-AMDT": (3 * 128, True), "self-attention": (128, False),
              "(self, cross)-attention": (3 * 128, False)}
    for row, (width, triple) in widths.items():
        model = build_model("vae_amdt", TABLE2, cls.ablations[row]).eval()
        assert not model.encoders and model.discriminator is None and not model.generators
        seen = shapes_through_hooks(model, batch)
        if triple:   # Section VI-F1: x_v, x_l, x_a instead of mu_v, mu_l, mu_a
            assert seen["triple"] == ((b, 3, width), (b, width)) and seen["f_r"][0] == (b, width)
        else:        # without triple attention f_r reads the concatenation
            assert model.triple is None and seen["f_r"][0] == (b, 3 * width)
        assert set(model.loss_terms(batch, model(batch))) == {"task"}
        assert len(model.training_phases()[0].steps) == 1
    no_cross = build_model("vae_amdt", TABLE2, {"use_cross_attention": False})
    assert set(no_cross.f_s) == {"text_to_text", "audio_to_audio", "visual_to_visual"}
    assert no_cross.encoders["text"].enc[0].in_features == 128
    no_vae = build_model("vae_amdt", SMALL, {**TINY, "use_vae": False})
    out = no_vae(batch_of(SMALL))
    assert set(no_vae.loss_terms(batch_of(SMALL), out)) == {"task", "generator", "discriminator"}
    assert no_vae.encoders["text"].dec is None and no_vae.encoders["text"].logvar is None


def test_bad_sizes_and_presets_are_refused_clearly():
    with pytest.raises(ConfigError, match="model.vae_amdt.latent must be >= 1"):
        build_model("vae_amdt", SMALL, {"latent": 0})
    with pytest.raises(ConfigError, match="unknown VAE-AMDT preset 'iemocap'"):
        VAEAMDTConfig.preset("iemocap")
    with pytest.raises(ConfigError, match="heads"):
        build_model("vae_amdt", SMALL, {"heads": 8})     # the paper's attention has no heads


def test_fidelity_table_names_existing_code():
    """Every code location the fidelity table cites exists in models/zoo/vae_amdt.py or the recipes."""
    text = FIDELITY.read_text(encoding="utf-8")
    source = (ROOT / "models" / "zoo" / "vae_amdt.py").read_text(encoding="utf-8")
    cited = set(re.findall(r"`vae_amdt\.py: ([A-Za-z_][A-Za-z0-9_.]*)`", text))
    assert cited, "the fidelity table cites no code"
    for name in cited:
        assert re.search(rf"\b{re.escape(name.split('.')[-1])}\b", source), name
