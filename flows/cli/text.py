"""`sentiflow extract --transcripts FILE.csv`: the text path alone over a transcript-only table (no media): the text
encoder and the configured extractors that read a transcript alone (word-aligned text, translation)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from extractors.config import SentiFlowConfig
from extractors.text_only import extract_transcript_table, text_item_extractors
from pipeline.cache import FeatureCache
from pipeline.labels import read_labels


def run_transcript_table(args: argparse.Namespace, config: SentiFlowConfig, device: torch.device | str,
                         cache: FeatureCache) -> int:
    """Encode every row of `args.transcripts` into the cache; exit 1 when no row succeeded (a bad file raises)."""
    table = read_labels(args.transcripts)
    also = text_item_extractors([n for n in config.extraction.extractors if n != "text"])   # e.g. aligned, translation
    summary = extract_transcript_table(table, cache, config, device=device, progress=not args.no_progress,
                                       also=also)
    for rid, why in list(summary.failures.items())[:20]:
        print(f"{rid}: {why}")
    if len(summary.failures) > 20:
        print(f"... and {len(summary.failures) - 20} more (see the cache's failures.jsonl)")
    print(summary.line())
    if args.summary_json:
        path = Path(args.summary_json)
        if args.paths:
            path = path.with_name(path.stem + ".transcripts" + path.suffix)
        path.write_text(json.dumps(asdict(summary), indent=1, ensure_ascii=False), encoding="utf-8")
    return 0 if summary.done + summary.cached > 0 else 1
