"""`sentiflow ablate | crossval | transfer`: the experiment commands (one experiment directory each)."""

from __future__ import annotations

import argparse
from typing import Any

from models.registry import DEFAULT_MODEL
from pipeline.config import ConfigError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", required=True, help="feature cache directory")
    p.add_argument("--labels", required=True, help="MMSA CSV (video_id,clip_id,text,label,mode) or id,text,label")
    p.add_argument("--media-root", help="folder the MMSA ids resolve under (default: the label file's folder)")
    p.add_argument("--model", default=None, help=f"model name (default: {DEFAULT_MODEL})")
    p.add_argument("--out", required=True, help="experiment directory to create")
    p.add_argument("--config", help="feature config YAML (the one the cache was built with)")
    p.add_argument("--options", help="YAML with sections model:, train:, data:, task: (e.g. train: {epochs: 20})")
    p.add_argument("--recipe", help="the model's training recipe, e.g. paper:mosi, under every member run")
    p.add_argument("--epochs", type=int, help="shortcut for train.epochs")
    p.add_argument("--seeds", default=None, help="comma list of training seeds")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--extract", action="store_true", help="first extract features the rows lack")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ablate, crossval and transfer."""
    p = sub.add_parser("ablate", help="train a model over modality subsets x switched-off components x seeds")
    _common(p)
    p.add_argument("--modality-sets", default=None,
                   help="comma list of subsets, e.g. T,TA,TAV (default: T,A,V,TA,TV,AV,TAV)")
    p.add_argument("--components", default=None,
                   help="comma list of the model's ablatable parts to switch off (default: all; 'none': none)")
    p.add_argument("--all-subsets", action="store_true",
                   help="ablate components on every modality subset (default: on the full set only)")
    p.add_argument("--eval-split", default="test", help="split the table reports (default: test)")
    p.set_defaults(func=run_ablate, seeds_default="1,2,3")

    p = sub.add_parser("crossval", help="k-fold cross-validation grouped by source video, beside the standard split")
    _common(p)
    p.add_argument("--folds", type=int, default=10, help="number of folds (default 10)")
    p.add_argument("--no-standard-split", action="store_true", help="skip the labels' own train/valid/test run")
    p.add_argument("--modalities", help="comma list (default: all the model can use)")
    p.set_defaults(func=run_crossval, seeds_default="1")

    p = sub.add_parser("transfer", help="train on one language, evaluate zero-shot and few-shot on others")
    _common(p)
    p.add_argument("--source", required=True, help="training language (the labels' language column)")
    p.add_argument("--targets", required=True, help="comma list of target languages")
    p.add_argument("--fractions", default=None, help="comma list of few-shot shares of the target's training rows "
                   "rehearsed with the source (default 0,0.01,0.13: zero-shot and the multilingual paper's 1 %% and 13 %%)")
    p.add_argument("--modalities", help="comma list (default: all the model can use)")
    p.set_defaults(func=run_transfer, seeds_default="1")


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from flows.cli.train import _options, parse_seeds
    from models.recipes import apply_recipe

    options = apply_recipe(_model(args), args.recipe, _options(args.options))
    if args.epochs is not None:
        options.setdefault("train", {})["epochs"] = args.epochs
    seeds = parse_seeds(args.seeds or args.seeds_default)
    return {"seeds": seeds, "options": options, "config_path": args.config, "device": args.device,
            "media_root": args.media_root, "progress": True, "extract_missing": args.extract}


def _model(args: argparse.Namespace) -> str:
    return args.model or DEFAULT_MODEL


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _report(result: Any) -> int:
    from pipeline.files import markdown_table

    print(markdown_table(list(result.table.columns), result.table.values.tolist()), end="")
    print(f"experiment directory: {result.out_dir} ({len({r['run_dir'] for r in result.runs})} runs)")
    return 0


def run_ablate(args: argparse.Namespace) -> int:
    """Run the ablation grid and print its table."""
    from models.experiments.ablation import run_ablation

    comps = _split(args.components)
    if comps is not None and [c.lower() for c in comps] == ["none"]:
        comps = []
    result = run_ablation(args.cache, args.labels, _model(args), args.out, modality_sets=_split(args.modality_sets),
                          components=comps, eval_split=args.eval_split,
                          components_on_all_subsets=args.all_subsets, **_kwargs(args))
    return _report(result)


def run_crossval(args: argparse.Namespace) -> int:
    """Run grouped k-fold cross-validation and print its table."""
    from models.experiments.cross_validation import run_cross_validation

    result = run_cross_validation(args.cache, args.labels, _model(args), args.out, folds=args.folds,
                                  standard_split=not args.no_standard_split, modalities=_split(args.modalities),
                                  **_kwargs(args))
    return _report(result)


def run_transfer(args: argparse.Namespace) -> int:
    """Run the language-transfer experiment and print its table."""
    from models.experiments.language_transfer import DEFAULT_FRACTIONS, run_language_transfer

    try:
        fractions = [float(f) for f in args.fractions.split(",") if f.strip()] if args.fractions else \
            list(DEFAULT_FRACTIONS)
    except ValueError:
        raise ConfigError(f"--fractions must be a comma list of numbers, got {args.fractions!r}") from None
    result = run_language_transfer(args.cache, args.labels, _model(args), args.out, source=args.source,
                                   targets=_split(args.targets) or [], fractions=fractions,
                                   modalities=_split(args.modalities), **_kwargs(args))
    return _report(result)
