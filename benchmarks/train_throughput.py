"""Training epoch time and scoring throughput of the engine's models on MOSI-sized synthetic data.

The dataset is MOSI-sized (1,284 train rows by default) with one of the shape sets of `SHAPES`: VAE-AMDT's
Table 2 (V 64 x 8, L 100 x 1024, A 128 x 128, unaligned) or word-aligned MOSI (50 words) with the papers'
features (GloVe 300, COVAREP 74, Facet 35) or SentiFlow's (MiniLM 384, acoustic 31, FER 135); a word-aligned
model (`aligned = True`) gets `aligned_*` keys. Values are random normal: timing does not depend on them, only on
shapes (metrics are not reported). The packed split lives on the device whole, as in real training. With
`--recipe` each model trains with its recipe's model and train settings (batch size, optimiser) instead of the
defaults.

    python benchmarks/train_throughput.py --device cpu --report benchmarks/reports/train_throughput_cpu.md
    python benchmarks/train_throughput.py --device cpu --models fdmer --shapes glove-aligned ours-aligned \
        --recipe paper:mosi --report benchmarks/reports/train_throughput_fdmer_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import machine_info  # noqa: E402

from models.base import ModelSpec, count_parameters  # noqa: E402
from models.data import PackedDataset, PackedSplit  # noqa: E402
from models.optimization import TrainConfig  # noqa: E402
from models.recipes import apply_recipe  # noqa: E402
from models.registry import build_model, get_model_class  # noqa: E402
from models.trainer import Trainer, amp_dtype, predict_split  # noqa: E402
from pipeline.system import resolve_device  # noqa: E402

# shape set -> modality -> (T, D)
SHAPES = {
    "table2": {"text": (100, 1024), "audio": (128, 128), "visual": (64, 8)},       # VAE-AMDT Table 2, unaligned
    "glove-aligned": {"text": (50, 300), "audio": (50, 74), "visual": (50, 35)},   # GloVe, COVAREP, Facet
    "ours-aligned": {"text": (50, 384), "audio": (50, 31), "visual": (50, 135)},   # MiniLM, acoustic, FER
}
TABLE2 = SHAPES["table2"]


def table2_split(n: int, seed: int) -> PackedSplit:
    """n rows of Table 2-shaped random features with full masks."""
    return random_split(TABLE2, n, seed)


def random_split(shapes: dict[str, tuple[int, int]], n: int, seed: int, prefix: str = "") -> PackedSplit:
    """n rows of random features of the given shapes with full masks, under keys `prefix + modality`."""
    g = torch.Generator().manual_seed(seed)
    t: dict[str, torch.Tensor] = {}
    for m, (steps, dim) in shapes.items():
        t[f"{prefix}{m}"] = torch.randn(n, steps, dim, generator=g)
        t[f"{prefix}{m}_mask"] = torch.ones(n, steps)
    if prefix:
        t[f"{prefix}mask"] = torch.ones(n, max(steps for steps, _ in shapes.values()))
    t["present"] = torch.ones(n, 3)
    t["label"] = torch.rand(n, generator=g) * 6 - 3
    t["index"] = torch.arange(n)
    return PackedSplit(t, [str(i) for i in range(n)])


def main() -> int:
    """Time `--epochs` epochs and a scoring pass per model and shape set; print and optionally write a report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=["vae_amdt", "ef_lstm", "unimodal"])
    ap.add_argument("--shapes", nargs="+", default=["table2"], choices=list(SHAPES))
    ap.add_argument("--recipe", help="train each model with its recipe's model and train settings, e.g. paper:mosi")
    ap.add_argument("--train-rows", type=int, default=1284)
    ap.add_argument("--score-rows", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--batch-size", type=int, help="training batch (default: the recipe's, else 32)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--report", help="write a Markdown report here (and .json beside it)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = machine_info()
    print("machine:", json.dumps(info))
    load_before = os.getloadavg()
    results = []
    for shape in args.shapes:
        shapes = SHAPES[shape]
        spec = ModelSpec(dims={m: d for m, (_, d) in shapes.items()}, seq_lens={m: t for m, (t, _) in shapes.items()})
        for name in args.models:
            prefix = "aligned_" if get_model_class(name).aligned else ""
            train = random_split(shapes, args.train_rows, 0, prefix)
            score = random_split(shapes, args.score_rows, 1, prefix).to(device)
            options = apply_recipe(name, args.recipe, {}) if args.recipe else {}
            torch.manual_seed(0)
            task = options.get("task", {})
            model = build_model(name, ModelSpec(dims=spec.dims, seq_lens=spec.seq_lens,
                                                **({"loss": task["loss"]} if "loss" in task else {})),
                                options.get("model", {}))
            cfg = TrainConfig.from_dict({**options.get("train", {}), "epochs": args.epochs + 1, "patience": 0,
                                         "checkpoint_every": 10_000})
            if args.batch_size:
                cfg.batch_size = args.batch_size
            data = PackedDataset({"train": train}, list(shapes), spec.dims, spec.seq_lens)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(model, data, cfg, tmp, device)
                trainer.fit()
                secs = [h["train_seconds"] for h in trainer.state["history"]][1:]   # drop the warm-up epoch
            dtype = amp_dtype(cfg, device)
            predict_split(model, score, device, 256, dtype)   # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            predict_split(model, score, device, 256, dtype)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            score_s = time.perf_counter() - t0
            r = {"model": name, "shapes": shape, "batch_size": cfg.batch_size, "optimizer": cfg.optimizer,
                 "parameters": count_parameters(model), "epoch_s": sorted(secs)[len(secs) // 2],
                 "epoch_s_all": secs, "score_rows_per_s": args.score_rows / score_s,
                 "amp": str(dtype) if dtype else "off"}
            results.append(r)
            print(f"{name} on {shape}: {r['parameters']:,} params, epoch {r['epoch_s']:.2f} s ({args.train_rows} rows, "
                  f"batch {cfg.batch_size}), scoring {r['score_rows_per_s']:.0f} rows/s")
    load_after = os.getloadavg()
    command = " ".join(["python benchmarks/train_throughput.py"] + sys.argv[1:])
    described = "; ".join(f"{k}: " + ", ".join(f"{m[0].upper()} {t}x{d}" for m, (t, d) in SHAPES[k].items())
                          for k in args.shapes)
    lines = [f"# Training and scoring throughput ({device.type})", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; after: "
             f"{', '.join(f'{x:.1f}' for x in load_after)} (on {os.cpu_count()} cores: above that, other jobs took "
             "part of the CPU)", "",
             f"Command: `{command}`", "",
             f"Shapes ({described}), {args.train_rows} train rows"
             f"{', recipe ' + args.recipe if args.recipe else ''}; scoring = forward passes over {args.score_rows} "
             "packed rows (features already extracted), batch 256.", "",
             "| model | shapes | params | batch | AMP | epoch s (median) | scoring rows/s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['shapes']} | {r['parameters']:,} | {r['batch_size']} | {r['amp']} | "
                     f"{r['epoch_s']:.2f} | {r['score_rows_per_s']:.0f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(report, encoding="utf-8")
        Path(args.report).with_suffix(".json").write_text(json.dumps(
            {"machine": info, "load_before": load_before, "load_after": load_after, "command": command,
             "results": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
