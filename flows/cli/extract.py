"""`sentiflow extract PATHS... --cache DIR`: features for every file into the cache, with a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.files import json_dumps


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `extract`."""
    p = sub.add_parser("extract", help="extract features from media files or folders into a cache")
    p.add_argument("paths", nargs="*", help="media files and/or folders (searched recursively)")
    p.add_argument("--transcripts", metavar="CSV",
                   help="transcript-only input: id,text,label[,mode] CSV run through the text encoder alone")
    p.add_argument("--cache", required=True, help="feature cache directory (created if needed)")
    p.add_argument("--config", help="YAML config file (defaults: the papers' settings)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--only", nargs="+", metavar="EXTRACTOR", help="run only these extractors")
    p.add_argument("--summary-json", help="also write the summary as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_extract)


def run_extract(args: argparse.Namespace) -> int:
    """Run extraction; exit 1 only when no input succeeded."""
    from extractors.config import load_config
    from extractors.runner import ExtractionRunner
    from pipeline.cache import FeatureCache
    from pipeline.system import resolve_device

    if not args.paths and not args.transcripts:
        print("sentiflow: error: give media PATHS and/or --transcripts CSV", file=sys.stderr)
        return 2
    config = load_config(args.config)
    device = resolve_device(args.device)
    cache = FeatureCache(args.cache)
    if args.transcripts:
        from flows.cli.text import run_transcript_table

        rc = run_transcript_table(args, config, device, cache)
        if rc or not args.paths:
            return rc
    runner = ExtractionRunner(config, cache, device=device, only=args.only)
    summary = runner.run(args.paths, progress=not args.no_progress)
    print(summary.table())
    if args.summary_json:
        Path(args.summary_json).write_text(json_dumps(summary.to_dict(), indent=1), encoding="utf-8")
    if not summary.any_succeeded:
        print("sentiflow: no input could be processed", file=sys.stderr)
        return 1
    return 0
