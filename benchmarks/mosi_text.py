"""MOSI text benchmark: frozen text-encoder features of the MOSI transcripts -> text-only models -> valid metrics.

Uses ../shared/data/mosi_text/{train,valid}.csv (id,text,label). Nothing is tuned on anything but these
two files; the held-out test split is not here. Prints the machine, a table against the papers' text-only
anchors, CPU/GPU epoch times, and the command that evaluates a run on another labelled CSV of this form.

    python benchmarks/mosi_text.py --device cpu --report benchmarks/reports/mosi_text_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import machine_info  # noqa: E402

from extractors.config import SentiFlowConfig  # noqa: E402
from extractors.text_only import extract_transcript_table  # noqa: E402
from models.training import train_model  # noqa: E402
from pipeline.cache import FeatureCache  # noqa: E402
from pipeline.labels import LabelTable, read_labels  # noqa: E402
from pipeline.system import resolve_device  # noqa: E402

# text-only rows of the papers (MOSI test split; ours is the valid split, so the comparison is indicative)
ANCHORS = {
    "VAE-AMDT Table 8, text only": {"mae": 0.990, "acc2": 0.838},
    "hybrid-modal Table IV, only T (fine-tuned BERT-base)": {"mae": 0.782, "acc2": 0.843},
}

# text-only models run by default: (run name, model, model options)
MODELS = [
    ("unimodal_pool", "unimodal", {"encoder": "pool", "hidden": 128}),
    ("unimodal_lstm", "unimodal", {"encoder": "lstm", "hidden": 128}),
    ("ef_lstm_text", "ef_lstm", {"hidden": 64, "steps": 50}),
    ("vae_amdt_text", "vae_amdt", {}),
    ("adamml_text", "adamml", {}),
]
# runs trained with a paper recipe (models/recipes/<model>.yaml): its epochs apply unless --epochs is given
RECIPES: dict[str, str] = {"adamml_text": "paper:moseas"}
DEFAULT_EPOCHS = 40
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mosi_text"


def load_mosi(data: Path) -> LabelTable:
    """train.csv and valid.csv as one table with modes train/valid."""
    for name in ("train.csv", "valid.csv"):
        if not (data / name).is_file():
            raise SystemExit(f"{data / name} not found: pass --data with the folder holding train.csv and valid.csv")
    train = read_labels(data / "train.csv", default_mode="train")
    valid = read_labels(data / "valid.csv", default_mode="valid")
    return LabelTable(train.rows + valid.rows, str(data))


def main() -> int:
    """Extract, train every model, write the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--work", default=str(ROOT / "runs" / "mosi_text"), help="cache and run directories")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=[m[0] for m in MODELS], help="subset of the run names")
    ap.add_argument("--epochs", type=int, default=None,
                    help=f"epochs per run (default: the run's recipe, else {DEFAULT_EPOCHS})")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--report", help="write a Markdown report here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = machine_info()
    info["load average at start (1 min)"] = f"{os.getloadavg()[0]:.1f}"   # the machine is shared: name the load
    print("machine:", json.dumps(info))
    work = Path(args.work)
    cache = FeatureCache(work / "cache")
    table = load_mosi(Path(args.data))
    config = SentiFlowConfig()
    t0 = time.perf_counter()
    s = extract_transcript_table(table, cache, config, device=device, progress=True)
    extract_s = time.perf_counter() - t0
    print(f"text features: {s.line()} ({extract_s:.1f} s)")
    results = []
    for run_name, model, opts in MODELS:
        if run_name not in args.models:
            continue
        run_dir = work / "runs" / f"{run_name}_{device.type}"
        recipe = RECIPES.get(run_name)
        train = {"seed": args.seed}
        if args.epochs is not None or recipe is None:
            train["epochs"] = args.epochs if args.epochs is not None else DEFAULT_EPOCHS
        options = {"model": opts, "train": train}
        t0 = time.perf_counter()
        train_model(work / "cache", table, model, run_dir, device=str(device), modalities=["text"], options=options,
                    recipe=recipe, progress=True)
        wall = time.perf_counter() - t0
        summary = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        v = summary["metrics"]["valid"]
        results.append({"run": run_name, "model": model, "options": opts, "recipe": recipe, "run_dir": str(run_dir),
                        "parameters": summary["parameters"], "best_epoch": summary["best_epoch"],
                        "epochs_run": summary["epochs_run"], "epoch_s": summary["epoch_seconds_median"],
                        "wall_s": wall, "valid": v})
        print(f"{run_name}: valid MAE {v['mae']:.3f} Corr {v['corr']:.3f} Acc-2 {100 * v['acc2_non0']:.1f}/"
              f"{100 * v['acc2_has0']:.1f} Acc-7 {100 * v['acc7']:.1f}; epoch {summary['epoch_seconds_median']:.2f} s")
    info["load average at end (1 min)"] = f"{os.getloadavg()[0]:.1f}"
    report = render(results, info, device, extract_s, s.line(), args, work)
    print(report)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(report, encoding="utf-8")
        Path(args.report).with_suffix(".json").write_text(json.dumps(
            {"machine": info, "device": str(device), "extract_seconds": extract_s, "results": results},
            indent=1), encoding="utf-8")
    return 0


def render(results: list[dict], info: dict, device: torch.device, extract_s: float, extract_line: str,
           args: argparse.Namespace, work: Path) -> str:
    """Markdown report: machine, table vs anchors, timing, how to evaluate on another CSV."""
    lines = [f"# MOSI text benchmark ({device.type})", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             f"Command: `python benchmarks/mosi_text.py"
             f"{' --data ' + args.data if Path(args.data) != DEFAULT_DATA else ''} --device {args.device}"
             f"{' --models ' + ' '.join(args.models) if args.models != [m[0] for m in MODELS] else ''}"
             f"{' --epochs ' + str(args.epochs) if args.epochs is not None else ''} "
             f"--seed {args.seed}{' --threads ' + str(args.threads) if args.threads else ''}`", "",
             "Runs with a paper recipe: " + (", ".join(f"{r} `{RECIPES[r]}`" for r in RECIPES) or "none") + ".", "",
             f"Text features (frozen packaged all-MiniLM-L6-v2, 384-d, 100 tokens): {extract_line}, "
             f"{extract_s:.1f} s", "",
             "Validation split (229 segments). Acc-2 and F1 as non0 / has0 (negative vs positive without "
             "zero labels / negative vs non-negative).", "",
             "| run | params | best ep. | MAE | Corr | Acc-2 | F1 | Acc-7 | epoch s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        v = r["valid"]
        lines.append(f"| {r['run']} | {r['parameters']:,} | {r['best_epoch']}/{r['epochs_run']} | {v['mae']:.3f} | "
                     f"{v['corr']:.3f} | {100 * v['acc2_non0']:.1f} / {100 * v['acc2_has0']:.1f} | "
                     f"{100 * v['f1_non0']:.1f} / {100 * v['f1_has0']:.1f} | {100 * v['acc7']:.1f} | "
                     f"{r['epoch_s']:.2f} |")
    lines += ["", "Anchors (papers, MOSI test split):", ""]
    for name, a in ANCHORS.items():
        lines.append(f"- {name}: MAE {a['mae']:.3f}, Acc-2 {100 * a['acc2']:.1f}")
    if results:
        best = min(results, key=lambda r: r["valid"]["mae"])
        lines += ["", "Evaluate a run on another labelled CSV of the same form (`id,text,label`):", "",
                  f"    sentiflow evaluate --model {best['run_dir']} --labels OTHER.csv --cache {work / 'cache'}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
