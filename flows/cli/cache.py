"""`sentiflow cache ls|verify|gc`: inspect and maintain a feature cache."""

from __future__ import annotations

import argparse
from collections import Counter

from pipeline.files import printable


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `cache ls`, `cache verify` and `cache gc`."""
    p = sub.add_parser("cache", help="inspect or maintain a feature cache")
    csub = p.add_subparsers(dest="cache_command", required=True)
    ls = csub.add_parser("ls", help="list cached entries")
    ls.add_argument("cache")
    ls.add_argument("--extractor", help="only entries of this extractor")
    ls.add_argument("--failures", action="store_true", help="list the failure log instead")
    ls.add_argument("--dataset", metavar="LABELS.csv",
                    help="instead: which rows of this label file lack which modality (extracted or imported)")
    ls.add_argument("--media-root", help="with --dataset: folder the MMSA ids resolve under")
    ls.add_argument("--config", help="with --dataset: feature config YAML the cache was built with")
    ls.add_argument("--options", help="with --dataset: training options YAML whose data: section names the sources")
    ls.add_argument("--aligned", action="store_true", help="with --dataset: check the word-aligned sources")
    ls.set_defaults(func=run_ls)
    vf = csub.add_parser("verify", help="check every entry's tensors against its metadata")
    vf.add_argument("cache")
    vf.add_argument("--fix", action="store_true", help="delete corrupt entries (they are recomputed on re-run)")
    vf.set_defaults(func=run_verify)
    gc = csub.add_parser("gc", help="remove dead claims, temporary leftovers, corrupt entries and outdated versions")
    gc.add_argument("cache")
    gc.add_argument("--temp-older-than", type=float, default=3600.0, metavar="SECONDS",
                    help="age after which a temporary directory is a crash leftover (default 3600)")
    gc.add_argument("--keep-old-versions", action="store_true",
                    help="keep entries written by older versions of registered extractors")
    gc.set_defaults(func=run_gc)


def run_ls(args: argparse.Namespace) -> int:
    """Print one line per entry (or per failure) and totals."""
    from pipeline.cache import FeatureCache

    cache = FeatureCache(args.cache, create=False)
    if args.dataset:
        return run_ls_dataset(args, cache)
    if args.failures:
        for f in cache.failures():
            print(f"{f.get('extractor') or '-':<10} {printable(f.get('path'))}: {printable(f.get('reason'))}")
        return 0
    counts: Counter[str] = Counter()
    for e in cache.entries():
        name = e.meta.get("extractor", "?")
        if args.extractor and name != args.extractor:
            continue
        counts[f"{name} ({e.status})"] += 1
        shapes = ", ".join(f"{k}{tuple(v['shape'])}" for k, v in e.meta.get("tensors", {}).items()
                           if k in ("fixed", "sequence", "embeddings"))
        note = e.meta.get("reason", shapes)
        print(f"{e.key[:12]}  {name:<10} {e.status:<8} {_short(printable(e.meta.get('source', '')))}  "
              f"{printable(note)}")
    print("totals: " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "empty"))
    return 0


def run_ls_dataset(args: argparse.Namespace, cache) -> int:
    """Print each row that lacks a modality with why, then per modality how many rows have it."""
    from extractors.config import load_config
    from models.data import modality_coverage, read_data_config
    from pipeline.labels import read_labels

    data = read_data_config(args.options)
    data.aligned = args.aligned
    table = read_labels(args.dataset, args.media_root)
    coverage = modality_coverage(load_config(args.config), cache, table, data)
    have = Counter()
    for rid, states in coverage:
        lacking = {m: why for m, why in states.items() if why != "ok"}
        have.update(m for m, why in states.items() if why == "ok")
        if lacking:
            print(f"{rid}: lacks " + "; ".join(f"{m} ({why})" for m, why in lacking.items()))
    n = len(coverage)
    sources = ", ".join(f"{m} <- {data.source(m).extractor}" for m in data.modalities)
    print(f"{n} rows ({sources}): " + ", ".join(f"{m} {have[m]}/{n}" for m in data.modalities))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Exit 1 when a corrupt entry is found (and not fixed)."""
    from pipeline.cache import FeatureCache

    cache = FeatureCache(args.cache, create=False)
    report = cache.verify(fix=args.fix)
    for key, why in report.corrupt:
        print(f"corrupt {key}: {why}" + (" (removed)" if args.fix else ""))
    for key in report.stale_claims:
        print(f"dead claim {key}: its owner is gone or its lease expired (`sentiflow cache gc` removes it)")
    print(f"{report.ok} ok, {len(report.corrupt)} corrupt, {len(report.temp_dirs)} temporary leftovers, "
          f"{len(report.stale_claims)} dead claims")
    return 1 if report.corrupt and not args.fix else 0


def run_gc(args: argparse.Namespace) -> int:
    """Remove what `verify` would flag plus old temporaries and (by default) outdated versions."""
    from extractors.registry import EXTRACTORS
    from pipeline.cache import FeatureCache

    cache = FeatureCache(args.cache, create=False)
    versions = None if args.keep_old_versions else {n: c.version for n, c in EXTRACTORS.load_all().items()}
    removed = cache.gc(temp_older_than_s=args.temp_older_than, stale_versions=versions)
    print(f"removed {removed['temp']} temporary, {removed['corrupt']} corrupt, {removed['stale']} outdated entries, "
          f"{removed['claims']} dead claims")
    return 0


def _short(path: str) -> str:
    return path if len(path) <= 50 else "..." + path[-47:]
