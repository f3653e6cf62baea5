"""The issue-#10 experiments on real data: MOSI text only (ablation, 10-fold CV, binary and 7-class tasks).

Uses ../shared/data/mosi_text/{train,valid}.csv (id,text,label): MOSI's train rows train (the trainer holds out
a validation part of them for early stopping), MOSI's valid rows are the evaluation split ("test" in the
tables); MOSI's own test split is not in ../shared and is never used. Runs the same `sentiflow` commands a
researcher would, times each, then writes one results report (HTML + Markdown + CSV, `sentiflow report`) and a
Markdown summary with the tables, the machine and the commands.

    python benchmarks/mosi_text_experiments.py --device cpu --report benchmarks/reports/mosi_text_experiments_cpu.md

Only the text modality: ../shared holds MOSI's transcripts and labels, not its videos.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402

from flows.cli import main as sentiflow  # noqa: E402

# text-only rows of the papers (MOSI test split; ours is the valid split, so the comparison is indicative)
ANCHORS = [("VAE-AMDT Table 8, text only", "0.990", "83.8"),
           ("hybrid-modal Table IV, only T (fine-tuned BERT-base)", "0.782", "84.3")]


def write_labels(data: Path, out: Path) -> int:
    """MOSI train.csv rows as mode=train and valid.csv rows as mode=test in one labels CSV; returns the row count."""
    rows = []
    for name, mode in (("train.csv", "train"), ("valid.csv", "test")):
        path = data / name
        if not path.is_file():
            raise SystemExit(f"{path} not found: pass --data with the folder holding MOSI's train.csv and valid.csv")
        with path.open(newline="", encoding="utf-8") as fh:
            rows += [{"id": r["id"], "text": r["text"], "label": r["label"], "mode": mode} for r in csv.DictReader(fh)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "text", "label", "mode"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def write_options(path: Path, epochs: int, patience: int, threads: int) -> None:
    """The training options every run shares (YAML, as `--options` takes it)."""
    path.write_text(f"train:\n  epochs: {epochs}\n  patience: {patience}\n  cpu_threads: {threads}\n", encoding="utf-8")


def steps(common: list[str], work: Path, folds: int, seeds: str) -> list[tuple[str, list[str]]]:
    """(name, sentiflow arguments) of every experiment, in order."""
    return [
        ("ablation", ["ablate", *common, "--modality-sets", "T", "--seeds", seeds, "--extract",
                      "--out", str(work / "ablation")]),
        ("cv10", ["crossval", *common, "--folds", str(folds), "--modalities", "text", "--out", str(work / "cv10")]),
        ("binary", ["train", *common, "--task", "binary", "--modalities", "text", "--out", str(work / "binary")]),
        ("classification", ["train", *common, "--task", "classification", "--modalities", "text",
                            "--out", str(work / "classification")]),
    ]


def table_body(path: Path) -> str:
    """An experiment's table.md without its title line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith("# ")).strip()


def task_row(run: Path, name: str, keys: list[tuple[str, str]]) -> str:
    """One Markdown row of a task run's evaluation-split metrics, in percent."""
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["metrics"]["test"]
    return f"| {name} | {int(metrics['n'])} | " + ", ".join(f"{label} {100 * metrics[k]:.1f}" for k, label in keys) + " |"


def render(args: argparse.Namespace, work: Path, timings: dict[str, float], commands: list[str], n_rows: int) -> str:
    """The Markdown summary."""
    info = machine_info()
    out = [
        "# MOSI text experiments (ablation, grouped 10-fold CV, binary and 7-class tasks)",
        "",
        "Command: `python benchmarks/mosi_text_experiments.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        f"Data: ../shared/data/mosi_text ({n_rows} rows): MOSI train rows train (a validation part held out for early "
        "stopping), MOSI valid rows are the evaluation split, called `test` below; MOSI's test split is never used. "
        f"Model `{args.model}` on frozen text-encoder features (the `text` extractor's default packaged encoder), "
        f"{args.epochs} epochs at most, patience {args.patience}. Text only: ../shared has no MOSI video or audio.",
        "",
        "The commands it ran (wall seconds on this machine):",
        "",
        "| step | wall s | command |",
        "|---|---:|---|",
    ]
    out += [f"| {name} | {timings[name]:.0f} | `{cmd}` |" if timings[name] >= 0 else f"| {name} | (reused) | `{cmd}` |"
            for name, cmd in zip(timings, commands)]
    out += ["", "## Ablation (mean ± std over seeds 1, 2, 3)", "", table_body(work / "ablation" / "table.md"), "",
            "Components that leave a text-only model unchanged (the adversarial modality discriminator and the "
            "cross-modal attention need two modalities) are skipped and listed in experiment.json.", "",
            "## Cross-validation (10 folds grouped by video, so no speaker is in two folds)", "",
            table_body(work / "cv10" / "table.md"), "",
            "## Classification tasks", "",
            "| task | n | metrics |", "|---|---:|---|",
            task_row(work / "binary", "binary (label > 0 vs <= 0)", [("acc2", "Acc-2"), ("f1", "F1")]),
            task_row(work / "classification", "7-class (rounded label)", [("acc7", "Acc-7"), ("f1_macro", "macro F1")]),
            "", "## The papers' text-only rows (their MOSI test split; ours is the valid split: indicative only)", "",
            "| paper row | MAE | Acc-2 |", "|---|---:|---:|"]
    out += [f"| {name} | {mae} | {acc2} |" for name, mae, acc2 in ANCHORS]
    report_html = str(work / "report" / "report.html").replace(f"{ROOT}/", "")
    out += ["", f"The full report with loss curves, PR curves and t-SNE maps: `{report_html}` "
            "(not committed: 100+ PNGs; re-run this script to make it).", ""]
    return "\n".join(out)


def main() -> int:
    """Write the labels and options, run every experiment, the report and the summary."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mosi_text"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "mosi_text_experiments"), help="run directories")
    ap.add_argument("--cache", default=None, help="feature cache (default: WORK/cache)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="vae_amdt_small")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--seeds", default="1,2,3", help="ablation seeds")
    ap.add_argument("--report", default=None, help="write the Markdown summary here")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the steps whose results are already in WORK (table.md / metrics.json) and only summarise")
    args = ap.parse_args()

    work = Path(args.work)
    labels, options = work / "labels.csv", work / "options.yaml"
    n_rows = write_labels(Path(args.data), labels)
    write_options(options, args.epochs, args.patience, args.threads)
    cache = args.cache or str(work / "cache")
    common = ["--cache", cache, "--labels", str(labels), "--model", args.model, "--options", str(options),
              "--device", args.device]
    timings_file = work / "timings.json"     # wall seconds of the steps run, kept for --reuse
    saved = json.loads(timings_file.read_text(encoding="utf-8")) if timings_file.is_file() else {}
    timings: dict[str, float] = {}
    commands: list[str] = []
    for name, argv in steps(common, work, args.folds, args.seeds):
        commands.append("sentiflow " + " ".join(argv).replace(f"{ROOT}/", ""))
        if args.reuse and ((work / name / "table.md").is_file() or (work / name / "metrics.json").is_file()):
            timings[name] = saved.get(name, -1.0)
            continue
        t0 = time.perf_counter()
        code = sentiflow(argv)
        timings[name] = saved[name] = time.perf_counter() - t0
        timings_file.write_text(json.dumps(saved, indent=1), encoding="utf-8")
        if code != 0:
            raise SystemExit(f"step {name} failed with exit code {code}: sentiflow {' '.join(argv)}")
    parts = [str(work / n) for n in ("ablation", "cv10", "binary", "classification")]
    if sentiflow(["report", *parts, "--out", str(work / "report"), "--title", "MOSI text (valid split)"]) != 0:
        raise SystemExit("sentiflow report failed")
    text = render(args, work, timings, commands, n_rows)
    print(text)
    if args.report:
        Path(args.report).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
