"""The learning-rate trials behind models/recipes/text_finetune.yaml: finetune:mosi with another encoder rate,
pooling and epoch count, one seed, on the MOSI text cache that `benchmarks/mosi_text.py` builds.

    python benchmarks/mosi_text.py --device cpu --models unimodal_pool          # builds WORK/cache once
    python benchmarks/text_finetune_lr.py --encoder-lr 5e-5 --epochs 6
    python benchmarks/text_finetune_lr.py --encoder-lr 1e-4 --epochs 5
    python benchmarks/text_finetune_lr.py --encoder-lr 3e-5 --epochs 8 --loss l1 --batch-size 16
    python benchmarks/text_finetune_lr.py --encoder-lr 6e-5 --layer-decay 0.8 --epochs 8 --loss l1 --batch-size 16

Prints the machine and the validation MAE / Corr / Acc-2 of every epoch (from the run's metrics.json history).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import machine_info  # noqa: E402
from mosi_text import DEFAULT_DATA, load_mosi  # noqa: E402

from models.training import train_model  # noqa: E402


def main() -> int:
    """Train one finetune:mosi variant and print its per-epoch validation figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--work", default=str(ROOT / "runs" / "mosi_text"), help="mosi_text.py's --work (its cache)")
    ap.add_argument("--encoder-lr", type=float, required=True)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--pooling", default="mean", choices=["mean", "cls"])
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--loss", default="mse", choices=["mse", "l1", "huber"], help="the task loss (recipe: mse)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--layer-decay", type=float, default=1.0,
                    help="train.layer_decay.factor: layer i of L trains at encoder-lr * D**(L-1-i), embeddings D**L")
    ap.add_argument("--warmup", type=float, default=0.1, help="share of the steps in the linear warm-up")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("machine:", json.dumps(machine_info()))
    lr = args.encoder_lr
    groups = [{"match": r"^text_encoder\..*(bias|LayerNorm\.weight)$", "lr": lr, "weight_decay": 0.0},
              {"match": r"^text_encoder\.", "lr": lr}, {"match": r"(bias|LayerNorm\.weight)$", "weight_decay": 0.0}]
    options = {"model": {"pooling": args.pooling}, "task": {"loss": args.loss},
               "train": {"epochs": args.epochs, "seeds": [args.seed], "lr": args.head_lr,
                         "param_groups": groups, "layer_decay": {"factor": args.layer_decay},
                         "batch_size": args.batch_size, "warmup": args.warmup}}
    work = Path(args.work)
    decay = f"_ld{args.layer_decay:g}" if args.layer_decay != 1.0 else ""
    run = work / "runs" / (f"text_finetune_lr{lr:g}{decay}_{args.pooling}_{args.epochs}ep_{args.loss}"
                           f"_b{args.batch_size}_w{args.warmup:g}_s{args.seed}")
    train_model(work / "cache", load_mosi(Path(args.data)), "text_finetune", run, device="cpu", modalities=["text"],
                options=options, recipe="finetune:mosi")
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    for epoch, h in enumerate(summary["history"], 1):
        v = h["valid"]
        print(f"epoch {epoch}: valid MAE {v['mae']:.3f} Corr {v['corr']:.3f} Acc-2 {100 * v['acc2_non0']:.1f}")
    print(f"best epoch {summary['best_epoch']}; {summary['epoch_seconds_median']:.1f} s per epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
