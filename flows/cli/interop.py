"""`sentiflow import csd|mmsa` and `sentiflow export csd|mmsa`: the field's feature files in and out of a cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.modalities import MODALITIES

SHOWN_FAILURES = 10


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `import csd`, `import mmsa`, `export csd` and `export mmsa`."""
    p = sub.add_parser("import", help="import CMU-MultimodalSDK or MMSA feature files into a feature cache")
    isub = p.add_subparsers(dest="import_command", required=True)
    c = isub.add_parser("csd", help="CMU-MultimodalSDK computational sequences (.csd, HDF5) as one modality")
    c.add_argument("files", nargs="+", metavar="FILE.csd")
    c.add_argument("--cache", required=True, help="feature cache directory (created if absent)")
    c.add_argument("--as", dest="modality", required=True, choices=MODALITIES, help="the modality they are")
    c.add_argument("--name", help="feature-set name (default: the sequence's root name, e.g. CMU_MOSI_COVAREP)")
    c.add_argument("--aligned", action="store_true",
                   help="word-aligned sequences (one row per word): import as the aligned kind (T_w words)")
    c.add_argument("--seq-len", type=int, default=0,
                   help="fixed length of the model input (default: text 100, audio 128, visual 64; aligned 50)")
    c.add_argument("--fit", choices=("pool", "truncate"), default="pool",
                   help="how a longer unaligned sequence is shortened (default pool)")
    c.add_argument("--index-base", type=int, default=1,
                   help="the SDK's <video>[i] becomes <video>_<i + this> (default 1: MOSI/MOSEI number segments "
                        "from 1)")
    c.add_argument("--segments", metavar="REF.csd",
                   help="cut whole-video entries into this sequence's intervals (e.g. the SDK's opinion labels)")
    c.add_argument("--config", help="feature config YAML to extend (default: the one earlier imports wrote)")
    c.add_argument("--replace", action="store_true", help="overwrite entries of this feature set that differ")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=run_import_csd)
    m = isub.add_parser("mmsa", help="an MMSA feature file (unaligned_50.pkl, aligned_50.pkl; restricted unpickler)")
    m.add_argument("file", metavar="FILE.pkl")
    m.add_argument("--cache", required=True, help="feature cache directory (created if absent)")
    m.add_argument("--name", help="feature-set name (default: the file's stem, e.g. unaligned_50)")
    m.add_argument("--modalities", help="comma list of text,audio,visual (default: every one the file holds)")
    al = m.add_mutually_exclusive_group()
    al.add_argument("--aligned", dest="aligned", action="store_true", default=None,
                    help="word-aligned (default: files without audio/vision lengths are)")
    al.add_argument("--unaligned", dest="aligned", action="store_false")
    m.add_argument("--labels-out", metavar="LABELS.csv", help="also write the file's labels as an MMSA label CSV")
    m.add_argument("--config", help="feature config YAML to extend (default: the one earlier imports wrote)")
    m.add_argument("--replace", action="store_true", help="overwrite entries of this feature set that differ")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=run_import_mmsa)

    p = sub.add_parser("export", help="export a cache's features as CMU-MultimodalSDK or MMSA files")
    esub = p.add_subparsers(dest="export_command", required=True)
    for fmt, what in (("csd", "one modality as a computational sequence (.csd)"),
                      ("mmsa", "the configured modalities in MMSA's feature-file layout (.pkl)")):
        e = esub.add_parser(fmt, help=what)
        e.add_argument("--cache", required=True, help="feature cache directory")
        e.add_argument("--labels", required=True, help="label CSV: the rows (ids, splits) to export")
        e.add_argument("--out", required=True, help="file to write")
        e.add_argument("--media-root", help="folder the MMSA ids resolve under (default: the label file's folder)")
        e.add_argument("--config", help="feature config YAML the cache was built with")
        e.add_argument("--options", help="training options YAML whose data: section names the sources")
        e.add_argument("--aligned", action="store_true", help="export the word-aligned sources")
        if fmt == "csd":
            e.add_argument("--as", dest="modality", required=True, choices=MODALITIES)
            e.add_argument("--root", help="the sequence's root name (default: SentiFlow_<extractor>_<modality>)")
            e.add_argument("--sdk-ids", action="store_true", help="write ids as the SDK's <video>[i]")
            e.add_argument("--index-base", type=int, default=1, help="with --sdk-ids: <video>_<n> -> [n - this]")
            e.set_defaults(func=run_export_csd)
        else:
            e.set_defaults(func=run_export_mmsa)


def _report(summaries: list, cache: str) -> int:
    """Print each import's line and first failures, and how to train on it; 1 when nothing was imported."""
    from models.interop.store import FEATURES_FILE, IMPORTS_DIR, OPTIONS_FILE

    total = 0
    for s in summaries:
        print(s.line())
        for entry, why in list(s.failed.items())[:SHOWN_FAILURES]:
            print(f"  failed {entry}: {why}")
        if len(s.failed) > SHOWN_FAILURES:
            print(f"  ... and {len(s.failed) - SHOWN_FAILURES} more (see the cache's failures.jsonl)")
        total += sum(s.counts.values())
    if not total:
        return 1
    folder = Path(cache) / IMPORTS_DIR
    print(f"train on it: sentiflow train --cache {cache} --labels LABELS.csv --config {folder / FEATURES_FILE} "
          f"--options {folder / OPTIONS_FILE} --model MODEL --out RUN")
    return 0


def run_import_csd(args: argparse.Namespace) -> int:
    """Import the files and print the outcome."""
    from models.interop.csd import import_csd

    summary = import_csd(args.files, args.cache, args.modality, name=args.name, aligned=args.aligned,
                         seq_len=args.seq_len, fit=args.fit, index_base=args.index_base, segments=args.segments,
                         config_path=args.config, replace=args.replace, progress=not args.no_progress)
    return _report([summary], args.cache)


def run_import_mmsa(args: argparse.Namespace) -> int:
    """Import the file and print the outcome."""
    from models.interop.mmsa import import_mmsa
    from pipeline.modalities import parse_modality_set

    mods = parse_modality_set(args.modalities) if args.modalities else None
    summaries = import_mmsa(args.file, args.cache, name=args.name, aligned=args.aligned, modalities=mods,
                            config_path=args.config, labels_out=args.labels_out, replace=args.replace,
                            progress=not args.no_progress)
    if args.labels_out:
        print(f"labels: {args.labels_out}")
    return _report(summaries, args.cache)


def _export_report(summary) -> int:
    print(summary.line())
    for rid, why in list(summary.skipped.items())[:SHOWN_FAILURES]:
        print(f"  left out {rid}: {why}")
    return 0


def run_export_csd(args: argparse.Namespace) -> int:
    """Write the computational sequence and print what went in."""
    from models.interop.csd import export_csd

    return _export_report(export_csd(args.cache, args.labels, args.modality, args.out, config_path=args.config,
                                     options_path=args.options, aligned=args.aligned, sdk_ids=args.sdk_ids,
                                     index_base=args.index_base, root=args.root, media_root=args.media_root))


def run_export_mmsa(args: argparse.Namespace) -> int:
    """Write the MMSA feature file and print what went in."""
    from models.interop.mmsa import export_mmsa

    return _export_report(export_mmsa(args.cache, args.labels, args.out, config_path=args.config,
                                      options_path=args.options, aligned=args.aligned, media_root=args.media_root))
