"""Where a model's GPU (or CPU) time goes: torch.profiler over training steps and scoring batches (issue #8).

    python benchmarks/profile_model.py --device cuda --model vae_amdt --batch 1024 --report benchmarks/reports/profile_vae_amdt_h100.md

Data: random-normal rows of the VAE-AMDT paper's Table 2 shapes (as train_score_throughput.py). Prints and writes
the top operators by self device time for `--steps` training steps (forward, losses, backward, optimizer) and for
`--steps` scoring batches, under the trainer's AMP setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import machine_info  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from train_throughput import TABLE2, table2_split  # noqa: E402

from models.base import ModelSpec  # noqa: E402
from models.optimization import TrainConfig  # noqa: E402
from models.registry import build_model
from models.trainer import _autocast, amp_dtype
from pipeline.system import resolve_device  # noqa: E402


def top_table(prof: profile, device: torch.device, rows: int) -> str:
    """The profiler's operator table sorted by self device (or CPU) time."""
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main() -> int:
    """Profile training steps and scoring batches; print and optionally write the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="vae_amdt")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=25, help="operators listed per table")
    ap.add_argument("--report")
    args = ap.parse_args()
    device = resolve_device(args.device)
    spec = ModelSpec(dims={m: d for m, (_, d) in TABLE2.items()}, seq_lens={m: t for m, (t, _) in TABLE2.items()})
    torch.manual_seed(0)
    model = build_model(args.model, spec, {}).to(device)
    batch = table2_split(args.batch, 0).to(device).batch(torch.arange(args.batch, device=device))
    dtype = amp_dtype(TrainConfig(), device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])

    def train_step() -> None:
        model.train()
        with _autocast(device, dtype):
            out = model(batch)
            loss = sum(model.loss_terms(batch, out).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def score_step() -> None:
        model.eval()
        with _autocast(device, dtype):
            model(batch)

    tables = {}
    for name, fn in (("training step", train_step), ("scoring batch", score_step)):
        for _ in range(2):
            fn()                                   # warm-up (cuDNN/cuBLAS autotune, allocator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with profile(activities=acts) as prof:
            for _ in range(args.steps):
                fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        tables[name] = top_table(prof, device, args.rows)
    cmd = "python benchmarks/profile_model.py " + " ".join(sys.argv[1:])
    lines = [f"# Profile of `{args.model}` ({device.type}), batch {args.batch}, AMP {dtype or 'off'}", "",
             f"Command: `{cmd}`", "", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine_info().items()), ""]
    for name, table in tables.items():
        lines += [f"## {args.steps} x {name}", "", "```", table, "```", ""]
    text = "\n".join(lines)
    print(text)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
