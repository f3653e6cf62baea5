"""MCTN as the multilingual paper uses it (Sec. 6.1.1): lambda 0.5 / 0.3, the zero-padded shared space, the
cycle and the level-2 cycle against hand-computed values, the shared-encoder variant, parameter counts
(docs/fidelity/mctn.md), test-time robustness, and overfitting the real sample clips.

Unit checks: random word-aligned batches of dims text 10 / audio 6 / visual 4 with a reduced config.
"""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.optimization import TrainConfig
from models.recipes import load_recipe
from models.registry import build_model
from models.trainer import Trainer
from models.zoo.mctn import PaddedSpace
from pipeline.config import ConfigError
from tests.helpers.batches import random_aligned_batch
from tests.helpers.fidelity import parameter_table
from tests.helpers.sample_rows import sample_training_set

pytestmark = pytest.mark.usefixtures("one_thread")

PAPER_SPEC = ModelSpec(dims={"text": 300, "audio": 74, "visual": 35}, seq_lens={"text": 50, "audio": 50, "visual": 50})
OUR_SPEC = ModelSpec(dims={"text": 384, "audio": 31, "visual": 135}, seq_lens={"text": 50, "audio": 50, "visual": 50})
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4}, seq_lens={"text": 6, "audio": 6, "visual": 6})
# deterministic: no dropout, no teacher forcing (no random draws), raw features (no standardisation)
EXACT = {"hidden_size": 8, "regressor_hidden": 8, "dropout": 0.0, "teacher_forcing": 0.0, "standardize": False}
ROWS = {"bimodal": {"second_target": []}, "hierarchical": {}, "shared encoder": {"shared_encoder": True}}


def lstm_params(d_in: int, hidden: int, layers: int = 1) -> int:
    """Parameters of a PyTorch LSTM stack (two bias vectors per layer)."""
    return sum(4 * hidden * ((d_in if i == 0 else hidden) + hidden) + 8 * hidden for i in range(layers))


def decoder_params(h: int, d_out: int, layers: int) -> int:
    """The attention decoder: previous-frame embedding, LSTM over [embedding; context], additive attention, output."""
    return (d_out * h + h) + lstm_params(2 * h, h, layers) + h * h + (h * h + h) + h + (2 * h * d_out + d_out)


def mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid steps and every feature of the padded vector, by hand."""
    m = mask.unsqueeze(-1)
    return ((a - b) ** 2 * m).sum() / (m.sum() * a.shape[-1])


def padded(batch: dict[str, torch.Tensor], left: int, name: str, right: int) -> torch.Tensor:
    x = batch[f"aligned_{name}"]
    return torch.cat([x.new_zeros(*x.shape[:2], left), x, x.new_zeros(*x.shape[:2], right)], -1)


def test_lambda_is_the_papers_for_the_depth_unless_set():
    assert build_model("mctn", SMALL, EXACT).lambda_t == 0.3 == build_model("mctn", SMALL, EXACT).lambda_c
    bimodal = build_model("mctn", SMALL, {**EXACT, "second_target": []})
    assert (bimodal.lambda_t, bimodal.lambda_c) == (0.5, 0.5)
    shared = build_model("mctn", SMALL, {**EXACT, "shared_encoder": True})
    assert (shared.lambda_t, shared.lambda_c) == (0.3, 0.3)
    assert build_model("mctn", SMALL, {**EXACT, "lambda_c": 0.1}).lambda_c == 0.1
    with pytest.raises(ConfigError, match="lambda_t and lambda_c must be >= 0"):
        build_model("mctn", SMALL, {"lambda_c": -1.0})
    with pytest.raises(ConfigError, match="shared_encoder decodes two targets"):
        build_model("mctn", SMALL, {"shared_encoder": True, "second_target": []})
    with pytest.raises(ConfigError, match="target: unknown modality"):
        build_model("mctn", SMALL, {"target": ["speech"]})


def test_padded_space_gives_each_part_its_own_slice():
    space = PaddedSpace({"source": 3, "target": 2})
    x = torch.arange(1.0, 7.0).reshape(1, 2, 3)
    assert space.width == 5
    assert torch.equal(space.embed("source", x), torch.cat([x, torch.zeros(1, 2, 2)], -1))
    y = torch.ones(1, 2, 2)
    assert torch.equal(space.embed("target", y), torch.cat([torch.zeros(1, 2, 3), y], -1))
    with pytest.raises(ValueError, match="part 'target' is 2 wide"):
        space.embed("target", x)


def test_bimodal_cycle_uses_one_encoder_and_one_decoder_and_the_losses_are_eqs_9_to_12():
    torch.manual_seed(0)
    model = build_model("mctn", SMALL, {**EXACT, "second_target": []}).train()
    batch = random_aligned_batch(SMALL, n=4, steps=6)
    mask = batch["aligned_mask"]
    out = model(batch)
    terms = model.loss_terms(batch, out)
    assert set(terms) == {"task", "translation", "cycle"}
    # by hand, in the shared space [text | audio] (16 wide)
    x_s, x_t = padded(batch, 0, "text", 6), padded(batch, 10, "audio", 0)
    states, final = model.encoder(x_s, mask)
    t_hat = model.decoder(states, mask, final, 6, x_t, 0.0)[0]
    back, back_final = model.encoder(t_hat, mask)                      # the same encoder ...
    s_hat = model.decoder(back, mask, back_final, 6, x_s, 0.0)[0]      # ... and the same decoder
    assert torch.allclose(terms["translation"], 0.5 * mse(t_hat, x_t, mask))
    assert torch.allclose(terms["cycle"], 0.5 * mse(s_hat, x_s, mask))
    assert torch.allclose(terms["task"], (out.prediction.squeeze(-1) - batch["label"]).abs().mean())   # Eq. 11
    assert torch.allclose(out.representations["encoder_states"], states)
    level = out.extras["levels"]["1"]
    assert torch.all(level["translation_target"][..., :10] == 0)       # zero padding outside the target's slice
    # every parameter gets a gradient from Eq. 12
    grads = torch.autograd.grad(sum(terms.values()), list(model.parameters()), allow_unused=True)
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_hierarchical_second_level_translates_cyclically_between_the_joint_embedding_and_the_third():
    torch.manual_seed(0)
    model = build_model("mctn", SMALL, EXACT).train()
    batch = random_aligned_batch(SMALL, n=4, steps=6)
    mask = batch["aligned_mask"]
    out = model(batch)
    terms = model.loss_terms(batch, out)
    assert set(terms) == {"task", "translation", "cycle", "translation2", "cycle2"}
    states, _ = model.encoder(padded(batch, 0, "text", 6), mask)
    joint = torch.cat([states, states.new_zeros(4, 6, 4)], -1)         # [E_{S<->T} | visual]: 8 + 4 wide
    states2, final2 = model.encoder2(joint, mask)
    x_u = torch.cat([states.new_zeros(4, 6, 8), batch["aligned_visual"]], -1)
    u_hat = model.decoder2(states2, mask, final2, 6, x_u, 0.0)[0]
    back, back_final = model.encoder2(u_hat, mask)
    e_hat = model.decoder2(back, mask, back_final, 6, joint, 0.0)[0]
    assert torch.allclose(terms["translation2"], 0.3 * mse(u_hat, x_u, mask))
    assert torch.allclose(terms["cycle2"], 0.3 * mse(e_hat, joint, mask))
    assert torch.allclose(out.representations["encoder_states"], states2)    # the RNN reads the level-2 encoder
    off = build_model("mctn", SMALL, {**EXACT, "level2_cycle": False}).train()
    assert set(off.loss_terms(batch, off(batch))) == {"task", "translation", "cycle", "translation2"}


def test_shared_encoder_decodes_both_targets_from_one_embedding():
    torch.manual_seed(0)
    model = build_model("mctn", SMALL, {**EXACT, "shared_encoder": True}).train()
    assert model.encoder2 is None and model.second_decoder is not None and model.space.width == 20
    batch = random_aligned_batch(SMALL, n=4, steps=6)
    mask = batch["aligned_mask"]
    out = model(batch)
    terms = model.loss_terms(batch, out)
    assert set(terms) == {"task", "translation", "cycle", "translation2", "cycle2"}
    x_s, x_u = padded(batch, 0, "text", 10), padded(batch, 16, "visual", 0)
    states, final = model.encoder(x_s, mask)
    assert torch.allclose(out.representations["encoder_states"], states)     # E_{S<->T,T'} feeds the RNN
    u_hat = model.second_decoder(states, mask, final, 6, x_u, 0.0)[0]
    back, back_final = model.encoder(u_hat, mask)
    s_hat = model.second_decoder(back, mask, back_final, 6, x_s, 0.0)[0]
    assert torch.allclose(terms["translation2"], 0.3 * mse(u_hat, x_u, mask))
    assert torch.allclose(terms["cycle2"], 0.3 * mse(s_hat, x_s, mask))


def test_ablations_switch_the_cycle_and_the_third_modality_off():
    model = build_model("mctn", SMALL, {**EXACT, **build_model("mctn", SMALL).ablations["w/o cycle"]}).train()
    batch = random_aligned_batch(SMALL, n=3, steps=6)
    assert set(model.loss_terms(batch, model(batch))) == {"task", "translation", "translation2"}
    assert model.ablatable == ("second_target", "level2_cycle")


@pytest.mark.parametrize("row", ROWS)
def test_inference_needs_only_the_source_modality(row):
    torch.manual_seed(0)
    model = build_model("mctn", SMALL, {**EXACT, **ROWS[row]})
    model.train()
    model(random_aligned_batch(SMALL, n=8, steps=6, seed=3))          # standardiser statistics, translation
    model.eval()
    batch = random_aligned_batch(SMALL, n=4, steps=6)
    text_only = {k: batch[k] for k in ("aligned_text", "aligned_mask")}
    with torch.no_grad():
        full = model.predict(batch)
        alone = model.predict(text_only)
    assert alone.shape == (4,) and torch.allclose(full, alone)
    changed = {k: v.clone() for k, v in text_only.items()}
    row_id = int((batch["aligned_mask"].sum(1) < 6).nonzero()[0])
    changed["aligned_text"][row_id, -1] += 50.0                       # beyond the row's last word
    with torch.no_grad():
        assert torch.allclose(model.predict(changed)[row_id], alone[row_id], atol=1e-6)


def test_parameter_counts_are_the_fidelity_tables():
    """docs/fidelity/mctn.md prints these counts; the architecture's formula gives them too."""
    h, r, layers = 512, 256, 2
    for spec in (PAPER_SPEC, OUR_SPEC):
        d_t, d_a, d_v = (spec.dims[m] for m in ("text", "audio", "visual"))
        head = lstm_params(h, r) + r + 1
        bimodal = lstm_params(d_t + d_a, h, layers) + decoder_params(h, d_t + d_a, layers) + head
        assert count_parameters(build_model("mctn", spec, {"second_target": []})) == bimodal
        level2 = lstm_params(h + d_v, h, layers) + decoder_params(h, h + d_v, layers)
        assert count_parameters(build_model("mctn", spec)) == bimodal + level2
        width = d_t + d_a + d_v
        shared = lstm_params(width, h, layers) + 2 * decoder_params(h, width, layers) + head
        assert count_parameters(build_model("mctn", spec, {"shared_encoder": True})) == shared
    table = parameter_table("mctn")
    assert set(table) == {f"mctn {row}" for row in ROWS}
    for row, options in ROWS.items():
        paper, ours = table[f"mctn {row}"]
        assert count_parameters(build_model("mctn", PAPER_SPEC, options)) == paper, row
        assert count_parameters(build_model("mctn", OUR_SPEC, options)) == ours, row


def test_recipes_set_the_paper_variants():
    assert load_recipe("mctn", "paper:moseas")["model"]["second_target"] == []
    assert load_recipe("mctn", "paper:moseas-shared-encoder")["model"]["shared_encoder"] is True
    assert load_recipe("mctn", "paper:moseas-trimodal")["task"] == {"loss": "l1"}


@pytest.mark.slow
def test_overfits_sixteen_random_samples():
    torch.manual_seed(0)
    model = build_model("mctn", SMALL, {"hidden_size": 24, "regressor_hidden": 24, "dropout": 0.0}).train()
    batch = random_aligned_batch(SMALL, n=16, steps=6, seed=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(150):
        opt.zero_grad()
        terms = model.loss_terms(batch, model(batch))
        if step == 0:
            first = {k: v.item() for k, v in terms.items()}
        sum(terms.values()).backward()
        opt.step()
    assert terms["translation"].item() < first["translation"] and terms["cycle"].item() < first["cycle"]
    model.eval()
    with torch.no_grad():
        mae = (model.predict(batch) - batch["label"]).abs().mean().item()
    assert mae < 0.15, f"training MAE {mae:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS)
def test_overfits_the_real_sample_clips(row, sample_cache, tmp_path):
    """End to end (Eq. 12) on the 10 real sample clips, reduced sizes (hidden 64): a low train MAE."""
    data = sample_training_set(sample_cache, aligned=True)
    torch.manual_seed(0)
    model = build_model("mctn", ModelSpec(dims=dict(data.dims), seq_lens=dict(data.seq_lens)),
                        {"hidden_size": 64, "regressor_hidden": 64, "dropout": 0.0, **ROWS[row]})
    cfg = TrainConfig.from_dict({"epochs": 60, "batch_size": 10, "lr": 3e-3, "patience": 0, "seed": 0,
                                 "weight_decay": 0.0, "schedule": "constant", "checkpoint_every": 1000})
    trainer = Trainer(model, data, cfg, tmp_path / "run", torch.device("cpu"))
    trainer.fit()
    mae = trainer.write_summary()["metrics"]["train"]["mae"]
    assert mae < 0.3, f"{row}: train MAE {mae:.3f}"
