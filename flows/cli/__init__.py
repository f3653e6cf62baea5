"""The `sentiflow` command line: one module per group of commands, each exposing `add_commands(subparsers)`.

Command modules import only argparse-level code at import time and load their implementation inside the
handler, so `sentiflow --help` answers without importing torch or any model. Every expected failure is a
`SentiFlowError`: printed once here as one line, exit status 2. Nothing here imports Prefect.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import SentiFlowError
from pipeline.files import printable

# Modules that add sub-commands; a new command group is one line here.
COMMAND_MODULES = [
    "flows.cli.extract",
    "flows.cli.cache",
    "flows.cli.demo",
    "flows.cli.train",
    "flows.cli.report",
    "flows.cli.experiments",
    "flows.cli.interop",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="sentiflow", description="Raw video to multimodal sentiment features and scores.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sentiflow` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SentiFlowError as exc:
        print(f"sentiflow: error: {printable(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
