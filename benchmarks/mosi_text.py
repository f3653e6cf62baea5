"""MOSI text benchmark: frozen text-encoder features of the MOSI transcripts -> text-only models -> valid metrics.

Uses ../shared/data/mosi_text/{train,valid}.csv (id,text,label). Nothing is tuned on anything but these
two files; the held-out test split is not here. Prints the machine, a table against the papers' text-only
anchors, CPU/GPU epoch times, and the command that evaluates a run on another labelled CSV of this form.

    python benchmarks/mosi_text.py --device cpu --report benchmarks/reports/mosi_text_cpu.md

A run with a recipe trains as the paper's recipe says (`models/recipes/<model>.yaml`: its epochs and seeds too,
unless --epochs / --seeds are given; the report prints the settings as run). Choose runs with --models, e.g. the
papers' text-only rows:

    python benchmarks/mosi_text.py --device cpu --models vae_amdt_paper hybrid_modal_paper word_lstm_paper \\
        multilogue_paper mult_paper --seeds 1 --report benchmarks/reports/mosi_text_paper_recipes_cpu.md
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
# Seq2Seq2Sentiment Table 1, UniModal-Baseline Text (T): (binary Prec, Rec, F1), (7-class Prec, Rec, F1)
TABLE_ANCHORS = {"Seq2Seq2Sentiment Table 1, baseline LSTM, text (T)": ((0.77, 0.76, 0.76), (0.32, 0.35, 0.33))}

# A text-only table has no word timings: a word-aligned model either reads the token sequence as its "words" (the
# packaged encoder's 100 token embeddings and their mask in place of the `aligned` extractor's text; hybrid-modal's
# fine-tuned encoder reads the token ids beside them) or, as its recipe says, the `aligned` extractor's word-level text.
TOKENS_AS_WORDS = {"aligned_sources": {"text": {"extractor": "text", "tensor": "fixed", "mask": "mask"}}}

# text-only models run by default: (run name, model, model options[, recipe, other option sections]); a run with
# a recipe trains with it (its epochs unless --epochs is given)
MODELS = [
    ("unimodal_pool", "unimodal", {"encoder": "pool", "hidden": 128}),
    ("unimodal_lstm", "unimodal", {"encoder": "lstm", "hidden": 128}),
    ("ef_lstm_text", "ef_lstm", {"hidden": 64, "steps": 50}),
    ("vae_amdt_paper", "vae_amdt", {}, "paper:mosi"),   # VAE-AMDT Table 8's text-only row
    ("hybrid_modal_paper", "hybrid_modal", {}, "paper:mosi", {"data": TOKENS_AS_WORDS}),   # hybrid-modal Table IV, T
    ("word_lstm_paper", "word_lstm", {}, "paper:mosi", {"data": TOKENS_AS_WORDS}),   # Seq2Seq2Sentiment Table 1, T
    ("multilogue_paper", "multilogue", {}, "paper:moseas"),   # multilingual paper Section 6.1.2, text alone
    ("mult_paper", "mult", {}, "paper:moseas"),               # multilingual paper Section 6.1.3, Table 1 "MuT T"
    ("adamml_paper", "adamml", {}, "paper:moseas"),           # multilingual paper Section 5.2, text alone
    ("text_finetune", "text_finetune", {}, "finetune:mosi"),  # MiniLM fine-tuned end to end from the cached ids
]
# extractors run beside `text` for the runs whose recipe reads word-level text
ALSO_EXTRACT = ["aligned"]
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
                    help=f"epochs per run (default: {DEFAULT_EPOCHS}, or the recipe's for a run with a recipe)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", help="comma list of seeds for the recipe runs (default: the recipe's)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--report", help="write a Markdown report here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = machine_info()
    print("machine:", json.dumps(info))
    work = Path(args.work)
    cache = FeatureCache(work / "cache")
    table = load_mosi(Path(args.data))
    args.n_valid = sum(row.mode == "valid" for row in table)
    config = SentiFlowConfig()
    t0 = time.perf_counter()
    s = extract_transcript_table(table, cache, config, device=device, progress=True, also=ALSO_EXTRACT)
    extract_s = time.perf_counter() - t0
    print(f"text features: {s.line()} ({extract_s:.1f} s)")
    results = []
    load_before = os.getloadavg()
    for run_name, model, opts, *more in MODELS:
        if run_name not in args.models:
            continue
        recipe, sections = (more[0] if more else None), (more[1] if len(more) > 1 else {})
        run_dir = work / "runs" / f"{run_name}_{device.type}"
        epochs = args.epochs or (None if recipe else DEFAULT_EPOCHS)
        train = {"seed": args.seed, **({"epochs": epochs} if epochs else {})}
        if recipe and args.seeds:
            train["seeds"] = [int(x) for x in args.seeds.split(",")]
        options = {**sections, "model": opts, "train": train}
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        train_model(work / "cache", table, model, run_dir, device=str(device), modalities=["text"], options=options,
                    recipe=recipe, progress=True)
        wall, load = time.perf_counter() - t0, (load0 + os.getloadavg()[0]) / 2
        summary = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        seeds_file = run_dir / "seeds.json"
        seeds = json.loads(seeds_file.read_text(encoding="utf-8")) if seeds_file.is_file() else None
        v = summary["metrics"]["valid"]
        results.append({"run": run_name, "model": model, "options": opts, "recipe": recipe, "run_dir": str(run_dir),
                        "parameters": summary["parameters"], "best_epoch": summary["best_epoch"],
                        "epochs_run": summary["epochs_run"], "epoch_s": summary["epoch_seconds_median"],
                        "wall_s": wall, "load": load, "valid": v, "train": record["train"], "task": record["task"],
                        "seeds": seeds and {"seeds": seeds["seeds"], "valid": seeds["metrics"]["valid"]}})
        print(f"{run_name}: valid MAE {v['mae']:.3f} Corr {v['corr']:.3f} Acc-2 {100 * v['acc2_non0']:.1f}/"
              f"{100 * v['acc2_has0']:.1f} Acc-7 {100 * v['acc7']:.1f}; epoch {summary['epoch_seconds_median']:.2f} s")
    info["load average (1 min) before / after training"] = f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}"
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
             f"Command: `{command_line(args)}`", "",
             f"Text features (frozen packaged all-MiniLM-L6-v2, 384-d, 100 tokens): {extract_line}, "
             f"{extract_s:.1f} s; a fine-tuned run (text_finetune) trains the same encoder end to end from the "
             "cached token ids", "",
             f"Validation split ({args.n_valid} segments). Acc-2 and F1 as non0 / has0 (negative vs positive without "
             "zero labels / negative vs non-negative). Prec / Rec / F1: the support-weighted binary (non0) and "
             "7-class columns of Seq2Seq2Sentiment Tables 1-3. A run with a recipe trains with it; "
             "word-aligned runs read the text's tokens or the `aligned` extractor's words, as the run says (a text-only "
             "table has no word timings). `load`: the 1-minute load average, mean of the run's start and end (the "
             "machine is shared; epoch times grow with it).",
             "",
             "| run | recipe | params | best ep. | MAE | Corr | Acc-2 | F1 | Acc-7 | binary Prec / Rec / F1 | "
             "7-class Prec / Rec / F1 | epoch s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        v = r["valid"]
        table_cols = " | ".join(" / ".join(f"{v[k]:.2f}" for k in keys) for keys in (
            ("precision_non0", "recall_non0", "f1_non0"), ("precision7", "recall7", "f1_7")))
        lines.append(f"| {r['run']} | {r.get('recipe') or '-'} | {r['parameters']:,} | "
                     f"{r['best_epoch']}/{r['epochs_run']} | {v['mae']:.3f} | "
                     f"{v['corr']:.3f} | {100 * v['acc2_non0']:.1f} / {100 * v['acc2_has0']:.1f} | "
                     f"{100 * v['f1_non0']:.1f} / {100 * v['f1_has0']:.1f} | {100 * v['acc7']:.1f} | "
                     f"{table_cols} | {r['epoch_s']:.2f} | {r.get('load', float('nan')):.1f} |")
    for r in results:
        lines += recipe_lines(r)
    lines += ["", "Anchors (papers, MOSI test split):", ""]
    for name, a in ANCHORS.items():
        lines.append(f"- {name}: MAE {a['mae']:.3f}, Acc-2 {100 * a['acc2']:.1f}")
    for name, (binary, seven) in TABLE_ANCHORS.items():
        lines.append(f"- {name}: binary Prec / Rec / F1 {' / '.join(f'{x:.2f}' for x in binary)}, 7-class "
                     f"{' / '.join(f'{x:.2f}' for x in seven)}")
    if results:
        best = min(results, key=lambda r: r["valid"]["mae"])
        lines += ["", "Evaluate a run on another labelled CSV of the same form (`id,text,label`):", "",
                  f"    sentiflow evaluate --model {best['run_dir']} --labels OTHER.csv --cache {work / 'cache'}"]
    return "\n".join(lines) + "\n"


def command_line(args: argparse.Namespace) -> str:
    """The command that reruns this benchmark."""
    parts = ["python benchmarks/mosi_text.py", f"--device {args.device}", f"--seed {args.seed}"]
    parts += [f"--{k} {getattr(args, k)}" for k in ("epochs", "seeds", "threads") if getattr(args, k)]
    if args.models != [m[0] for m in MODELS]:
        parts.append(f"--models {' '.join(args.models)}")
    return " ".join(parts)


def recipe_lines(r: dict) -> list[str]:
    """A recipe run's settings as run, and its mean ± std over seeds when it ran several."""
    if not r.get("recipe"):
        return []
    t = r["train"]
    seeds = r["seeds"]["seeds"] if r["seeds"] else (t["seeds"] or [t["seed"]])    # run.json is the kept seed's
    lines = ["", f"{r['run']}: {r['model']} with recipe {r['recipe']} as run: {t['optimizer']} lr {t['lr']:g}, "
             f"schedule {t['schedule']} (warm-up {t['warmup']:g}), batch {t['batch_size']}, {t['epochs']} epochs, "
             f"best epoch by validation {t['monitor']}, {r['task']['loss']} task loss, seeds "
             f"{', '.join(map(str, seeds))}; wall {r['wall_s'] / 60:.1f} min."]
    if r["seeds"]:
        sv = r["seeds"]["valid"]

        def cell(key: str, scale: float = 1.0, digits: int = 3) -> str:
            return f"{scale * sv[key]['mean']:.{digits}f} ± {scale * sv[key]['std']:.{digits}f}"

        lines += ["", f"{r['run']} over its {len(r['seeds']['seeds'])} seeds (mean ± std; the table row is the seed "
                  "best on validation):", "", "| MAE | Corr | Acc-2 non0 | F1 non0 | Acc-7 |", "|---|---|---|---|---|",
                  f"| {cell('mae')} | {cell('corr')} | {cell('acc2_non0', 100, 1)} | {cell('f1_non0', 100, 1)} "
                  f"| {cell('acc7', 100, 1)} |"]
    return lines


if __name__ == "__main__":
    sys.exit(main())
