"""Ablation runs: a model over modality subsets (T, A, V, TA, TV, AV, TAV) and switched-off components, seeds.

Components are what the model declares: `SentimentModel.ablatable` (config field names: a bool switch is set to
False, a loss weight to 0, a list of parts such as MCTN's hierarchical_target to empty; the row is "w/o NAME")
and `SentimentModel.ablations` (the paper's named rows, e.g. FDMER's "addition": config overrides, several
components off together as in VAE-AMDT Table 4). As in the papers (VAE-AMDT Table 7, FDMER, hybrid-modal), components
are ablated on the full modality set only (the largest subset that runs); `components_on_all_subsets=True`
ablates them on every subset. A component that has no effect on a subset (e.g. VAE-AMDT's adversarial
transfer with text alone: there is nothing to transfer) is detected by comparing the two models and
left out with the reason, instead of training an identical model twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from models.base import ModelSpec
from models.experiments.cross_validation import standard_parts
from models.experiments.runs import (
    ExperimentData,
    ExperimentResult,
    check_seeds,
    entry,
    headline_columns,
    load_experiment_data,
    make_dataset,
    slug,
    summarise,
    train_member,
    write_experiment,
)
from models.registry import build_model, get_model_class
from models.training import RunOptions, task_spec_fields
from pipeline.config import ConfigError
from pipeline.labels import LabelTable
from pipeline.modalities import modality_code, parse_modality_set

DEFAULT_MODALITY_SETS = ("T", "A", "V", "TA", "TV", "AV", "TAV")
FULL = "full"
NO_EFFECT_CHECK_ROWS = 8      # rows of the training split the no-effect check runs both models on


def component_label(model: str, name: str | None) -> str:
    """The table's label of a cell's components: 'full', the paper's row name, or 'w/o NAME'."""
    if name is None:
        return FULL
    return name if name in get_model_class(model).ablations else f"w/o {name}"


def overrides_of(model: str, name: str) -> dict[str, Any]:
    """The model-config overrides of ablation `name`: a named row's own, or the switch-off of a component."""
    cls = get_model_class(model)
    if name in cls.ablations:
        return dict(cls.ablations[name])
    return {name: off_value(model, name)}


def off_value(model: str, name: str) -> Any:
    """The value that switches component `name` off: False for a switch, 0 for a weight, [] for a list of parts."""
    cls = get_model_class(model)
    default = getattr(cls.Config(), name)
    if isinstance(default, bool):
        return False
    if isinstance(default, (int, float)):
        return type(default)(0)
    if isinstance(default, (list, tuple)):
        return []
    raise ConfigError(f"{model}.{name} is neither a switch (bool), a weight (number) nor a list of parts: "
                      "cannot switch it off")


def resolve_components(model: str, components: Sequence[str] | None) -> list[str]:
    """The components to ablate: the model's `ablatable` parts and named `ablations` (default) or those named."""
    cls = get_model_class(model)
    parts = tuple(cls.ablatable) + tuple(cls.ablations)
    if components is None:
        return list(parts)
    names = [c.strip() for c in components if c.strip()]
    unknown = [c for c in names if c not in parts]
    if unknown:
        raise ConfigError(f"model {model} has no ablatable component(s) {', '.join(unknown)}; its ablatable "
                          f"parts are: {', '.join(parts) or '(none)'}")
    return list(dict.fromkeys(names))


def run_ablation(cache_dir: str | Path, labels: str | Path | LabelTable, model: str, out_dir: str | Path, *,
                 modality_sets: Sequence[str] | None = None, components: Sequence[str] | None = None,
                 seeds: Sequence[int] = (1, 2, 3), options: dict[str, Any] | RunOptions | None = None,
                 config_path: str | Path | None = None, device: str = "auto", media_root: str | Path | None = None,
                 eval_split: str = "test", progress: bool = False, components_on_all_subsets: bool = False,
                 extract_missing: bool = False) -> ExperimentResult:
    """Train `model` on every (modality subset x component switch x seed) cell; table in the papers' layout."""
    seeds = check_seeds(seeds)
    comps = resolve_components(model, components)
    requested = [modality_code(parse_modality_set(s)) for s in (modality_sets or DEFAULT_MODALITY_SETS)]
    requested = list(dict.fromkeys(requested))
    needed = sorted({m for code in requested for m in parse_modality_set(code)})
    out = Path(out_dir)
    data = load_experiment_data(cache_dir, labels, model, options, config_path, device, media_root, needed,
                                extract_missing, progress)
    parts = standard_parts(data, eval_split)
    skipped_sets: dict[str, str] = {}
    usable: list[str] = []
    for code in requested:
        mods = parse_modality_set(code)
        lacking = [m for m in mods if m not in data.modalities]
        if lacking:
            skipped_sets[code] = "; ".join(data.unavailable.get(m, f"no {m} features") for m in lacking)
            continue
        why = _model_rejects(data, mods)
        if why:
            skipped_sets[code] = why
            continue
        usable.append(code)
    if not usable:
        raise ConfigError("no modality subset can run: " + "; ".join(f"{c}: {w}" for c, w in skipped_sets.items()))
    full_set = max(usable, key=len)     # the largest subset (first of equal size)
    cells: list[tuple[str, str | None]] = []
    skipped_components: list[dict[str, str]] = []
    for code in usable:
        cells.append((code, None))
        if comps and (components_on_all_subsets or code == full_set):
            for c in comps:
                reason = _no_effect(data, parse_modality_set(code), parts, c)
                if reason:
                    skipped_components.append({"modalities": code, "component": c, "reason": reason})
                else:
                    cells.append((code, c))
    datasets = {code: make_dataset(data, parts, parse_modality_set(code)) for code in usable}
    entries: list[dict[str, Any]] = []
    from tqdm import tqdm

    bar = tqdm(total=len(cells) * len(seeds), desc="ablation", unit="run", disable=not progress, dynamic_ncols=True)
    for code, comp in cells:
        overrides = overrides_of(model, comp) if comp else {}
        cell = {"modalities": code, "components": component_label(model, comp)}
        for seed in seeds:
            run_dir = out / "runs" / slug(f"{code}_{'full' if comp is None else 'without_' + comp}") / f"seed{seed}"
            res = train_member(data, datasets[code], run_dir, seed, [eval_split], overrides)
            entries.append(entry(run_dir, out, cell, seed, eval_split, res[eval_split]))
            bar.update(1)
    bar.close()
    table = summarise(entries, ["modalities", "components"], headline_columns(data.options))
    settings = {"modality_sets": requested, "modality_sets_run": usable, "modality_sets_skipped": skipped_sets,
                "components": comps, "components_skipped": skipped_components,
                "components_on": "every modality subset" if components_on_all_subsets else f"full set ({full_set})",
                "seeds": seeds, "eval_split": eval_split, "rows": {k: len(v) for k, v in parts.items()},
                "unavailable_modalities": data.unavailable, "skipped_rows": data.skipped,
                "labels": str(data.table.source), "cache": str(cache_dir), "options": data.options.to_dict()}
    return write_experiment(out, "ablation", data, settings, entries, table, ["modalities", "components"],
                            f"{model} ablation on {eval_split} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")


def _spec(data: ExperimentData, mods: Sequence[str]) -> ModelSpec:
    return ModelSpec(dims={m: data.dims[m] for m in mods}, seq_lens={m: data.seq_lens[m] for m in mods},
                     **task_spec_fields(data.options))


def _model_rejects(data: ExperimentData, mods: Sequence[str]) -> str:
    """Why the model cannot be built on this modality subset ('' when it can)."""
    try:
        build_model(data.model, _spec(data, mods), data.options.model)
    except ConfigError as exc:
        return f"model {data.model} rejects it: {exc}"
    return ""


def _no_effect(data: ExperimentData, mods: Sequence[str], parts: dict[str, list[str]], component: str) -> str:
    """A reason when switching `component` off yields the same model (same parameters, outputs and losses)."""
    spec = _spec(data, mods)
    changes = overrides_of(data.model, component)
    off = {**data.options.model, **changes}
    base = build_model(data.model, spec, data.options.model).config
    if all(getattr(base, k) == v for k, v in changes.items()):
        return "already off in the model config (" + ", ".join(f"{k}={v!r}" for k, v in changes.items()) + ")"
    sample = make_dataset(data, {"train": parts["train"][:NO_EFFECT_CHECK_ROWS]}, mods).splits.get("train")
    if sample is None:
        return ""
    torch.manual_seed(0)
    a = build_model(data.model, spec, data.options.model)
    torch.manual_seed(0)
    b = build_model(data.model, spec, off)
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape or not torch.equal(sa[k], sb[k]) for k in sa):
        return ""
    batch = sample.batch(torch.arange(len(sample)))
    epochs = max(1, data.options.train.epochs)
    with torch.no_grad():
        for epoch in sorted({0, epochs - 1}):
            for net in (a, b):
                net.set_epoch(epoch)
                net.train()
            outs = []
            for net in (a, b):
                torch.manual_seed(epoch)
                o = net(batch)
                outs.append((o.prediction, net.loss_terms(batch, o)))
            (pa, la), (pb, lb) = outs
            if not torch.equal(pa, pb) or la.keys() != lb.keys() or \
                    any(not torch.equal(la[k], lb[k]) for k in la):
                return ""
    return (f"no effect on {modality_code(mods)}: with {component}={off[component]!r} the model has the same "
            f"parameters, predictions and losses")
