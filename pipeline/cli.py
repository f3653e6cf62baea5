"""The `sentiflow` command line: extract, cache ls|verify|gc, and the commands other packages add."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from pipeline.cache import CacheError, FeatureCache
from pipeline.config import ConfigError

# Modules that add sub-commands: each exposes `add_commands(subparsers)`; a new command is one line here.
COMMAND_MODULES = [
    "pipeline.cli_extract",
    "pipeline.cli_cache",
    "pipeline.demo",
    "models.cli",
    "models.cli_report",
    "models.experiments.cli",
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
    except (ConfigError, CacheError) as exc:
        print(f"sentiflow: error: {exc}", file=sys.stderr)
        return 2


def open_cache(path: str, create: bool = True) -> FeatureCache:
    """Open a cache directory for a command."""
    return FeatureCache(Path(path), create=create)


def print_json(obj: object) -> None:
    """Print an object as indented JSON."""
    print(json.dumps(obj, indent=1, ensure_ascii=False, default=str))


if __name__ == "__main__":
    sys.exit(main())
