"""VAE-AMDT training and scoring speed on a MOSI-sized cache (issue #8, item 4), against the paper's figures.

    python benchmarks/train_score_throughput.py --device cpu --report benchmarks/reports/train_score_cpu.md
    python benchmarks/train_score_throughput.py --device cuda --report benchmarks/reports/train_score_h100.md

The cache is SYNTHETIC: `--rows` (2,199 = all CMU-MOSI clips) random-normal rows of the VAE-AMDT paper's
Table 2 shapes (text 100 x 1024, audio 128 x 128, visual 64 x 8), built by `train_throughput.table2_split` and kept
on the device whole (a GPU-resident dataset, as the trainer does). Timing depends only on the shapes; no accuracy
is reported. Measured: seconds per epoch with the trainer (`models.trainer.Trainer`, AMP as configured) at each
`--batch-sizes`, the 200-epoch wall time this implies, and scoring samples/s (`predict_split`, one pass over
`--score-rows` packed rows) at each `--score-batch-sizes`. Paper (GTX 1080): 200 epochs in 1 h 13 min, scoring
0.74 ms per sample. Issue #8 target on an H100: 200 epochs < 60 s, scoring >= 100,000 samples/s.
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
from machine import machine_info, peak_rss_mib  # noqa: E402
from train_throughput import TABLE2, table2_split  # noqa: E402

from models.base import ModelSpec, count_parameters  # noqa: E402
from models.data import PackedDataset  # noqa: E402
from models.optimization import TrainConfig  # noqa: E402
from models.registry import build_model
from models.trainer import Trainer, amp_dtype, predict_split
from pipeline.system import resolve_device  # noqa: E402

PAPER_200_EPOCHS_S = 73 * 60          # VAE-AMDT paper, GTX 1080: 1 h 13 min for 200 epochs
PAPER_SCORE_MS = 0.74                 # VAE-AMDT paper: ms per scored sample
TARGET_200_EPOCHS_S = 60.0            # issue #8, H100
TARGET_SCORE_PER_S = 100_000          # issue #8, H100
MOSI_ROWS = 2199                      # CMU-MOSI clips: the epoch size the figures are scaled to


def sync(device: torch.device) -> None:
    """Wait for queued GPU work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_seconds(model_name: str, spec: ModelSpec, data: PackedDataset, batch: int, epochs: int,
                  device: torch.device, compile_model: bool = False) -> tuple[float, list[float], str]:
    """Median train seconds per epoch over `epochs` timed epochs (after one warm-up epoch), and the AMP dtype."""
    torch.manual_seed(0)
    model = build_model(model_name, spec, {})
    cfg = TrainConfig(epochs=epochs + 1, batch_size=batch, patience=0, checkpoint_every=10_000, compile=compile_model)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, data, cfg, tmp, device)
        trainer.fit()
        secs = [h["train_seconds"] for h in trainer.state["history"]][1:]
    dtype = amp_dtype(cfg, device)
    return sorted(secs)[len(secs) // 2], secs, str(dtype) if dtype else "off"


def full_run_seconds(model_name: str, spec: ModelSpec, data: PackedDataset, batch: int, epochs: int,
                     device: torch.device, compile_model: bool = False) -> float:
    """Wall seconds of one real `epochs`-epoch Trainer.fit (set-up, every epoch, checkpoints), not an estimate."""
    torch.manual_seed(0)
    model = build_model(model_name, spec, {})
    cfg = TrainConfig(epochs=epochs, batch_size=batch, patience=0, checkpoint_every=10_000, compile=compile_model)
    with tempfile.TemporaryDirectory() as tmp:
        sync(device)
        t = time.perf_counter()
        Trainer(model, data, cfg, tmp, device).fit()
        sync(device)
        return time.perf_counter() - t


def score_rate(model_name: str, spec: ModelSpec, rows: int, batch: int, device: torch.device) -> float:
    """Samples per second of one scoring pass over `rows` device-resident rows (after a warm-up pass)."""
    torch.manual_seed(0)
    model = build_model(model_name, spec, {}).to(device)
    split = table2_split(rows, 1).to(device)
    dtype = amp_dtype(TrainConfig(), device)
    predict_split(model, split, device, batch, dtype)
    sync(device)
    t = time.perf_counter()
    predict_split(model, split, device, batch, dtype)
    sync(device)
    return rows / (time.perf_counter() - t)


def main() -> int:
    """Run the measurements; print and optionally write the Markdown report (+ JSON)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--report")
    ap.add_argument("--model", default="vae_amdt")
    ap.add_argument("--rows", type=int, default=2199, help="training rows per epoch (2,199 = CMU-MOSI)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per batch size (after a warm-up epoch)")
    ap.add_argument("--score-rows", type=int, default=4096)
    ap.add_argument("--score-batch-sizes", type=int, nargs="+", default=[256, 2048])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="train with train.compile (torch.compile in place)")
    ap.add_argument("--full-run-epochs", type=int, default=0,
                    help="also time one real training run of this many epochs (e.g. 200) at the largest batch size")
    ap.add_argument("--valid-rows", type=int, default=229,
                    help="validation rows evaluated after every epoch of the real run (229 = CMU-MOSI's valid split)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = machine_info()
    load_start = os.getloadavg()
    print("machine:", json.dumps(info), "load:", load_start, flush=True)
    spec = ModelSpec(dims={m: d for m, (_, d) in TABLE2.items()}, seq_lens={m: t for m, (t, _) in TABLE2.items()})
    data = PackedDataset({"train": table2_split(args.rows, 0)}, list(TABLE2), spec.dims, spec.seq_lens)
    params = count_parameters(build_model(args.model, spec, {}))
    train_rows = []
    for b in args.batch_sizes:
        med, secs, amp = epoch_seconds(args.model, spec, data, b, args.epochs, device, args.compile)
        mosi_epoch = med * MOSI_ROWS / args.rows
        train_rows.append({"batch": b, "epoch_s": med, "epoch_s_all": secs, "amp": amp,
                           "mosi_epoch_s": mosi_epoch, "200_epochs_s": 200 * mosi_epoch})
        print(f"batch {b}: epoch of {args.rows} rows {med:.2f} s -> 200 MOSI epochs {200 * mosi_epoch:.0f} s",
              flush=True)
    full_run = None
    if args.full_run_epochs:
        b = max(args.batch_sizes)
        with_valid = PackedDataset({"train": table2_split(args.rows, 0), "valid": table2_split(args.valid_rows, 2)},
                                   list(TABLE2), spec.dims, spec.seq_lens)
        secs = full_run_seconds(args.model, spec, with_valid, b, args.full_run_epochs, device, args.compile)
        full_run = {"batch": b, "epochs": args.full_run_epochs, "rows": args.rows, "valid_rows": args.valid_rows,
                    "wall_s": secs}
        print(f"real run: {args.full_run_epochs} epochs of {args.rows} rows at batch {b}: {secs:.1f} s", flush=True)
    score_rows = []
    for b in args.score_batch_sizes:
        r = score_rate(args.model, spec, args.score_rows, b, device)
        score_rows.append({"batch": b, "samples_per_s": r})
        print(f"scoring batch {b}: {r:.0f} samples/s", flush=True)
    load_end = os.getloadavg()
    cmd = "python benchmarks/train_score_throughput.py " + " ".join(sys.argv[1:])
    L = [f"# VAE-AMDT training and scoring speed ({device.type}), MOSI-sized synthetic cache", "",
         f"Command: `{cmd}`", "",
         "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + f"; torch threads {torch.get_num_threads()}; "
         f"load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in load_start)}, at end "
         f"{'/'.join(f'{x:.1f}' for x in load_end)}", "",
         f"Model `{args.model}`, {params:,} parameters{', torch.compile' if args.compile else ''}. Data: **synthetic** random-normal rows of the paper's Table 2 "
         f"shapes (L 100x1024, A 128x128, V 64x8), {args.rows} rows per epoch, resident on the device. Paper (GTX "
         f"1080): 200 epochs in 73 min ({PAPER_200_EPOCHS_S} s), scoring {PAPER_SCORE_MS} ms/sample "
         f"({1000 / PAPER_SCORE_MS:.0f} samples/s). Issue #8 targets (H100): 200 epochs < {TARGET_200_EPOCHS_S:.0f} s, "
         f"scoring >= {TARGET_SCORE_PER_S:,} samples/s.", "",
         f"| training batch | AMP | s per {args.rows}-row epoch (median) | s per {MOSI_ROWS}-row epoch"
         f"{' (scaled)' if args.rows != MOSI_ROWS else ''} | 200 epochs s | speed vs paper (>1 = faster) |",
         "|---|---|---|---|---|---|"]
    for r in train_rows:
        L.append(f"| {r['batch']} | {r['amp']} | {r['epoch_s']:.2f} | {r['mosi_epoch_s']:.1f} | "
                 f"{r['200_epochs_s']:.0f} | "
                 f"{PAPER_200_EPOCHS_S / r['200_epochs_s']:.2f}x |")
    if full_run:
        L += ["", f"Real run (not scaled): `Trainer.fit` for {full_run['epochs']} epochs of {full_run['rows']} rows, "
              f"validating on {full_run['valid_rows']} rows after each epoch, at batch {full_run['batch']}: **{full_run['wall_s']:.1f} s** wall "
              f"({PAPER_200_EPOCHS_S * full_run['epochs'] / 200 * full_run['rows'] / MOSI_ROWS / full_run['wall_s']:.1f}x "
              "the paper's pace per row-epoch)."]
    L += ["", "| scoring batch | samples/s | ms per sample | speed vs paper (>1 = faster) |", "|---|---|---|---|"]
    for r in score_rows:
        L.append(f"| {r['batch']} | {r['samples_per_s']:.0f} | {1000 / r['samples_per_s']:.3f} | "
                 f"{r['samples_per_s'] * PAPER_SCORE_MS / 1000:.2f}x |")
    L += ["", f"Peak RSS: {peak_rss_mib():.0f} MiB." + (
        f" Peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB." if device.type == "cuda"
        else "")]
    text = "\n".join(L) + "\n"
    print(text)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text, encoding="utf-8")
        Path(args.report).with_suffix(".json").write_text(json.dumps(
            {"machine": info, "load_start": load_start, "load_end": load_end, "parameters": params,
             "train": train_rows, "full_run": full_run, "score": score_rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
