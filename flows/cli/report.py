"""`sentiflow report RUN_DIR... --out DIR`: the results report (HTML + Markdown + CSV) of runs and experiments."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register report."""
    p = sub.add_parser("report", help="one self-contained HTML page (+ Markdown and CSV tables) of run, "
                                      "evaluation and experiment directories")
    p.add_argument("paths", nargs="+", metavar="RUN_DIR",
                   help="training run (run.json + metrics.json), evaluation (metrics.json + predictions.csv) "
                        "or experiment (experiment.json) directories")
    p.add_argument("--out", required=True, help="folder for report.html, report.md, tables/ and figures/")
    p.add_argument("--title", default=None, help="page title (default: SentiFlow results report)")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Build the report and print the files written."""
    from models.report.build import build_report

    files = build_report(args.paths, args.out, title=args.title)
    print(f"html: {files.html}")
    print(f"markdown: {files.markdown}")
    for path in files.csv:
        print(f"csv: {path}")
    print(f"figures: {len(files.figures)} PNG(s) under {files.markdown.parent / 'figures'}")
    return 0
