"""Training epoch time and scoring throughput of the engine's models at VAE-AMDT Table 2 input sizes.

The dataset is MOSI-sized (1,284 train rows by default) with Table 2 shapes (V 64 x 8, L 100 x 1024,
A 128 x 128). Values are random normal: timing does not depend on them, only on shapes (metrics are not
reported). The packed split lives on the device whole, as in real training.

    python benchmarks/train_throughput.py --device cpu --report benchmarks/reports/train_throughput_cpu.md
    python benchmarks/train_throughput.py --device cuda --report benchmarks/reports/train_throughput_h100.md
"""

from __future__ import annotations

import argparse
import json
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
from models.registry import build_model
from models.trainer import Trainer, amp_dtype, predict_split
from pipeline.system import resolve_device  # noqa: E402

TABLE2 = {"text": (100, 1024), "audio": (128, 128), "visual": (64, 8)}   # modality -> (T, D)


def table2_split(n: int, seed: int) -> PackedSplit:
    """n rows of Table 2-shaped random features with full masks."""
    g = torch.Generator().manual_seed(seed)
    t: dict[str, torch.Tensor] = {}
    for m, (steps, dim) in TABLE2.items():
        t[m] = torch.randn(n, steps, dim, generator=g)
        t[f"{m}_mask"] = torch.ones(n, steps)
    t["present"] = torch.ones(n, 3)
    t["label"] = torch.rand(n, generator=g) * 6 - 3
    t["index"] = torch.arange(n)
    return PackedSplit(t, [str(i) for i in range(n)])


def main() -> int:
    """Time `--epochs` epochs and a scoring pass per model; print and optionally write a report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=["vae_amdt", "ef_lstm", "unimodal"])
    ap.add_argument("--train-rows", type=int, default=1284)
    ap.add_argument("--score-rows", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--report", help="write a Markdown report here (and .json beside it)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = machine_info()
    print("machine:", json.dumps(info))
    spec = ModelSpec(dims={m: d for m, (_, d) in TABLE2.items()}, seq_lens={m: t for m, (t, _) in TABLE2.items()})
    train = table2_split(args.train_rows, 0)
    score = table2_split(args.score_rows, 1).to(device)
    results = []
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name, spec, {})
        cfg = TrainConfig(epochs=args.epochs + 1, batch_size=args.batch_size, patience=0,
                          checkpoint_every=10_000)
        data = PackedDataset({"train": train}, list(TABLE2), spec.dims, spec.seq_lens)
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
        r = {"model": name, "parameters": count_parameters(model), "epoch_s": sorted(secs)[len(secs) // 2],
             "epoch_s_all": secs, "score_rows_per_s": args.score_rows / score_s,
             "amp": str(dtype) if dtype else "off"}
        results.append(r)
        print(f"{name}: {r['parameters']:,} params, epoch {r['epoch_s']:.2f} s ({args.train_rows} rows, batch "
              f"{args.batch_size}), scoring {r['score_rows_per_s']:.0f} rows/s")
    lines = [f"# Training and scoring throughput ({device.type})", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             f"Command: `python benchmarks/train_throughput.py --device {args.device} --epochs {args.epochs}"
             f"{' --threads ' + str(args.threads) if args.threads else ''}`", "",
             f"Table 2 shapes (V 64x8, L 100x1024, A 128x128), {args.train_rows} train rows, batch "
             f"{args.batch_size}; scoring = forward passes over {args.score_rows} packed rows (features already "
             "extracted), batch 256.", "",
             "| model | params | AMP | epoch s (median) | scoring rows/s |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['amp']} | {r['epoch_s']:.2f} | "
                     f"{r['score_rows_per_s']:.0f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(report, encoding="utf-8")
        Path(args.report).with_suffix(".json").write_text(json.dumps({"machine": info, "results": results},
                                                                     indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
