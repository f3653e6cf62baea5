"""The results report: training runs, evaluations and experiments -> one HTML page, Markdown and CSV tables.

Inputs (each path one of):
  * a training run directory: run.json + metrics.json (+ loss_curve.png, plots/<split>/*.png, insights.json);
  * an evaluation directory written by `sentiflow evaluate`: metrics.json + predictions.csv (+ PNGs);
  * an experiment directory (`sentiflow ablate|crossval|transfer`): experiment.json (+ table.csv, results.csv and
    its member runs under runs/).
Outputs in `out_dir`: report.html (self-contained: inline CSS, PNGs as data: URIs, no script, no network),
report.md (figures referenced by relative path to copies in figures/) and tables/*.csv (the same tables).
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from models.report.document import Figure, Section, Table, format_value, is_number
from models.report.html import render_html
from models.report.markdown import render_markdown
from models.run_dir import (
    EVAL_DIR,
    EXPERIMENT_FILE,
    INSIGHTS_FILE,
    METRICS_FILE,
    PLOTS_DIR,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    TABLE_FILE,
)
from models.tasks import headline_metrics
from pipeline.config import ConfigError
from pipeline.modalities import modality_code

DEFAULT_TITLE = "SentiFlow results report"
EXPECTED = (f"a training run ({RUN_FILE} + {METRICS_FILE}), an evaluation directory ({METRICS_FILE} + "
            f"{PREDICTIONS_FILE}, from `sentiflow evaluate`) or an experiment directory ({EXPERIMENT_FILE})")

# Figures by file stem (prefix), in the order they are shown, with their captions.
FIGURE_CAPTIONS: list[tuple[str, str]] = [
    ("loss_curve", "Loss curve: train loss terms, validation loss and metrics per epoch"),
    ("pr_curve", "Precision-recall curve"),
    ("confusion", "Confusion matrix"),
    ("per_class", "Per-class metrics"),
    ("tsne", "t-SNE map of the fused representations"),
    ("mmd", "Distance (MMD) between modality representations"),
    ("modality_attention", "Modality attention: share of the fusion/attention weight per clip"),
    ("modality_selection", "Policy: share of each clip's windows that use the modality"),
    ("modality_shift", "Shifting gate: share of the text representation's shift from each modality"),
]
BOOKKEEPING = {"skipped", "masked_rows", "skipped_rows", "parameters", "best_epoch", "epochs_run",
               "epoch_seconds_mean", "epoch_seconds_median"}
SPLIT_ORDER = {"test": 0, "valid": 1, "train": 2}
PERCENT_PREFIXES = ("acc", "f1", "wacc")   # headline metrics shown in percent in the summary, as in the papers
SETTING_CHARS = 160      # experiment settings longer than this (as JSON) are left to experiment.json


class ReportError(ConfigError):
    """A report input is not a run, evaluation or experiment directory, or cannot be read."""


@dataclass
class ReportFiles:
    """What `build_report` wrote."""

    html: Path
    markdown: Path
    csv: list[Path]
    figures: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------- metrics helpers

def expand_headlines(kind: str, metrics: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """Headline columns with per-class placeholders (e.g. `f1_<class>`) expanded to the classes in `metrics`."""
    out: list[tuple[str, str]] = []
    for key, title in headline_metrics(kind):
        if "<" in key and ">" in key:
            prefix, suffix = key.split("<", 1)[0], key.split(">", 1)[1]
            title_prefix = title.split("<", 1)[0]
            found = sorted({k for m in metrics for k in m if k.startswith(prefix) and k.endswith(suffix)
                            and k[len(prefix):len(k) - len(suffix) or None] not in ("mean", "macro", "micro")})
            out += [(k, f"{title_prefix}{k[len(prefix):len(k) - len(suffix) or None]}") for k in found]
        else:
            out.append((key, title))
    return out


def infer_task(metrics: dict[str, Any]) -> str:
    """The task kind whose metrics these are (regression unless the keys say otherwise)."""
    if "mae" in metrics:
        return "regression"
    if "f1_mean" in metrics:
        return "multilabel"
    if "f1_macro" in metrics or ("acc7" in metrics and "acc2" not in metrics):
        return "classification"
    if "acc2" in metrics or "f1" in metrics:
        return "binary"
    return "regression"


def _task_kind(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("kind"), str):
        return value["kind"]
    return value if isinstance(value, str) and value else None


def _is_count(key: str) -> bool:
    return key == "n" or key.startswith("n_")


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a metrics dict (MMD pairs flattened to `mmd <pair>`), bookkeeping left out."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if is_number(v) and k not in BOOKKEEPING:
            out[k] = int(v) if _is_count(k) and float(v).is_integer() else float(v)
        elif k == "mmd" and isinstance(v, dict):
            out.update({f"mmd {pair}": float(x) for pair, x in v.items() if is_number(x)})
    return out


def percent_metric(key: str) -> bool:
    """Accuracies and F1 scores, which the papers' tables print in percent."""
    return key.startswith(PERCENT_PREFIXES)


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


# ---------------------------------------------------------------- reading inputs

def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _kind_or_reason(path: Path, hint: bool = True) -> tuple[str | None, str]:
    if not path.exists():
        return None, "does not exist"
    if not path.is_dir():
        return None, "is not a directory"
    if (path / EXPERIMENT_FILE).is_file():
        return "experiment", ""
    if (path / RUN_FILE).is_file():
        if not (path / METRICS_FILE).is_file():
            return None, f"has {RUN_FILE} but no {METRICS_FILE} (training not finished?)"
        return "run", ""
    if (path / METRICS_FILE).is_file() and (path / PREDICTIONS_FILE).is_file():
        return "evaluation", ""
    inside = sorted(p.name for p in path.iterdir() if hint and p.is_dir() and _kind_or_reason(p, False)[0])[:5]
    found = f" (it holds report inputs: {', '.join(inside)}; pass those)" if inside else ""
    return None, f"is none of the report inputs{found}"


def source_kind(path: Path) -> str:
    """"run", "evaluation" or "experiment" by the files in `path`; ReportError naming what was expected."""
    kind, reason = _kind_or_reason(path)
    if kind is None:
        raise ReportError(f"{path}: {reason}; expected {EXPECTED}")
    return kind


def _safe(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:limit] or "x"


def _figure_rank(stem: str) -> tuple[int, str]:
    for i, (prefix, _) in enumerate(FIGURE_CAPTIONS):
        if stem.startswith(prefix):
            return i, stem
    return len(FIGURE_CAPTIONS), stem


def _caption(stem: str) -> str:
    for prefix, caption in FIGURE_CAPTIONS:
        if stem == prefix:
            return caption
        if stem.startswith(prefix):
            return f"{caption} ({stem[len(prefix):].strip('_-')})"
    return stem.replace("_", " ")


def figures_in(folder: Path, group: str) -> list[Figure]:
    """The PNGs directly in `folder`, in the report's figure order, named for their copies as `group/stem.png`."""
    pngs = sorted((p for p in folder.glob("*.png") if p.is_file()), key=lambda p: _figure_rank(p.stem))
    return [Figure(p, _caption(p.stem), f"{_safe(group)}/{_safe(p.stem)}.png") for p in pngs]


def _insights_table(folder: Path, name: str, title: str) -> Table | None:
    path = folder / INSIGHTS_FILE
    if not path.is_file():
        return None
    data = _read_json(path)
    rows = [[key, part, s.get("mean"), s.get("std"), s.get("median"), s.get("n")]
            for key, block in data.items() if isinstance(block, dict)
            for part, s in (block.get("parts") or {}).items() if isinstance(s, dict)]
    return Table(title, name, ["insight", "part", "mean", "std", "median", "n"], rows) if rows else None


def _split_table(splits: list[tuple[str, dict[str, float]]], name: str, title: str) -> Table:
    keys: list[str] = []
    for _, m in splits:
        keys += [k for k in m if k not in keys]
    return Table(title, name, ["metric"] + [s for s, _ in splits], [[k] + [m.get(k) for _, m in splits] for k in keys])


def _ordered_splits(metrics: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    items = [(s, scalar_metrics(m)) for s, m in metrics.items() if isinstance(m, dict)]
    return sorted(items, key=lambda kv: SPLIT_ORDER.get(kv[0], 3))


def read_run(path: Path, label: str, slug: str, skip: frozenset[Path] = frozenset()) -> Section:
    """A training run directory as a report section."""
    record = _read_json(path / RUN_FILE)
    summary = _read_json(path / METRICS_FILE)
    splits = _ordered_splits(summary.get("metrics") or {})
    task = _task_kind(record.get("task")) or _task_kind(summary.get("task")) or \
        infer_task(splits[0][1] if splits else {})
    sec = Section("run", label, path, slug, model=str(record.get("model") or summary.get("model") or "?"),
                  task=task, splits=list(splits))
    data = record.get("data") or {}
    sec.modalities = modality_code(data.get("modalities") or [])
    facts = [("model", sec.model), ("task", task), ("labels", record.get("labels")),
             ("modalities", ", ".join(data.get("modalities") or [])), ("parameters", record.get("parameters")),
             ("epochs run", summary.get("epochs_run")), ("best epoch", summary.get("best_epoch")),
             ("monitor", summary.get("monitor")), ("stopped early", summary.get("stopped_early")),
             ("device", summary.get("device")), ("seconds per epoch (mean)", summary.get("epoch_seconds_mean")),
             ("skipped rows", summary.get("skipped_rows")), ("created", record.get("created"))]
    sec.facts = [(k, format_value(v)) for k, v in facts if v not in (None, "")]
    top = figures_in(path, "training")
    if top:
        sec.figures.append(("training", top))
    for folder, group, title in _result_folders(path, skip):
        figs = figures_in(folder, group)
        if figs:
            sec.figures.append((title, figs))
        extra = _read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).is_file() else {}
        if group.startswith("eval-"):
            values = {k: v for k, v in scalar_metrics(extra).items() if not k.startswith("mmd ")}
            if values:
                sec.splits.append((f"eval/{folder.name}", values))
        mmd = extra.get("mmd") if isinstance(extra.get("mmd"), dict) else {}
        if mmd:
            sec.tables.append(Table(f"MMD between modality representations ({title})", f"{slug}_{_safe(group)}_mmd",
                                    ["pair", "MMD"], [[k, float(v)] for k, v in mmd.items() if is_number(v)]))
        table = _insights_table(folder, f"{slug}_{_safe(group)}_insights", f"Modality attention / policy values "
                                f"({title})")
        if table:
            sec.tables.append(table)
    sec.splits.sort(key=lambda kv: SPLIT_ORDER.get(kv[0], 1.5))
    if sec.splits:
        sec.tables.insert(0, _split_table(sec.splits, f"{slug}_metrics", "Metrics of the best epoch per split"
                                          + (" and of its evaluations (eval/...)" if len(sec.splits) > len(splits)
                                             else "")))
    else:
        sec.notes.append(f"{path / METRICS_FILE} holds no per-split metrics")
    return sec


def _result_folders(run: Path, skip: frozenset[Path]) -> list[tuple[Path, str, str]]:
    """(folder, figure group, title) of a run's plots/<split>/ folders and its eval/<name>/ evaluations."""
    out = [(f, f.name, f"{f.name} split") for f in sorted((run / PLOTS_DIR).glob("*/")) if f.is_dir()]
    out += [(f, f"eval-{f.name}", f"evaluation {f.name}") for f in sorted((run / EVAL_DIR).glob("*/"))
            if f.is_dir() and f.resolve() not in skip and _kind_or_reason(f, False)[0] == "evaluation"]
    return out


def read_evaluation(path: Path, label: str, slug: str) -> Section:
    """An evaluation directory (`sentiflow evaluate` output) as a report section."""
    metrics = _read_json(path / METRICS_FILE)
    values = scalar_metrics(metrics)
    headline = {k: v for k, v in values.items() if not k.startswith("mmd ")}
    task = _task_kind(metrics.get("task"))
    run_dir = path.parent.parent if path.parent.name in (EVAL_DIR, PLOTS_DIR) else None
    record = _read_json(run_dir / RUN_FILE) if run_dir is not None and (run_dir / RUN_FILE).is_file() else {}
    task = task or _task_kind(record.get("task"))
    task = task or infer_task(headline)
    split = str(metrics.get("split") or path.name)
    sec = Section("evaluation", label, path, slug, model=str(metrics.get("model") or "?"), task=task,
                  splits=[(split, headline)],
                  modalities=modality_code((record.get("data") or {}).get("modalities") or []))
    facts = [("model", sec.model), ("task", task), ("labels", metrics.get("labels")), ("split", split),
             ("skipped rows", metrics.get("skipped")), ("rows with a masked modality", metrics.get("masked_rows"))]
    sec.facts = [(k, format_value(v)) for k, v in facts if v not in (None, "")]
    sec.tables.append(_split_table([(split, headline)], f"{slug}_metrics", "Metrics"))
    mmd = metrics.get("mmd") if isinstance(metrics.get("mmd"), dict) else {}
    if mmd:
        sec.tables.append(Table("MMD between modality representations", f"{slug}_mmd", ["pair", "MMD"],
                                [[k, float(v)] for k, v in mmd.items() if is_number(v)]))
    table = _insights_table(path, f"{slug}_insights", "Modality attention / policy values")
    if table:
        sec.tables.append(table)
    for k, v in metrics.items():
        if isinstance(v, str) and v.startswith("not drawn"):
            sec.notes.append(f"{k}: {v}")
    figs = figures_in(path, "evaluation")
    if figs:
        sec.figures.append(("evaluation", figs))
    return sec


def _mean_std(values: list[float]) -> str:
    vals = [v for v in values if is_number(v) and not math.isnan(v)]
    if not vals:
        return "–"
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def _read_csv_table(path: Path, title: str, name: str, formatted: bool = False) -> Table:
    """A CSV file as a report table; `formatted`: its numbers are already rounded as the papers print them, keep them."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from exc
    if not rows:
        raise ReportError(f"{path}: empty CSV")
    counts = [_is_count(c) or c in ("seed", "fold") for c in rows[0]]
    cell = _csv_formatted_cell if formatted else _csv_cell
    body = [[_whole(v) if i < len(counts) and counts[i] else v for i, v in enumerate(map(cell, r))]
            for r in rows[1:]]
    return Table(title, name, rows[0], body, source_csv=path)


def _whole(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _csv_formatted_cell(text: str) -> Any:
    """A cell of an already formatted table: read as `_csv_cell` reads it, but decimals stay as written (0.859)."""
    value = _csv_cell(text.strip())
    return text.strip() if isinstance(value, float) and not math.isnan(value) else value


def _csv_cell(text: str) -> Any:
    """A CSV cell as int or float when it is a plain number, else the text."""
    t = text.strip()
    if re.fullmatch(r"[-+]?\d+", t):
        return int(t)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?|nan|NaN", t):
        return float(t)
    return text


def read_experiment(path: Path, label: str, slug: str) -> Section:
    """An experiment directory (ablation, cross-validation, language transfer) with its member runs."""
    exp = _read_json(path / EXPERIMENT_FILE)
    kind = str(exp.get("kind") or "experiment")
    task = _task_kind(exp.get("task")) or "regression"
    runs = [r for r in exp.get("runs") or [] if isinstance(r, dict)]
    sec = Section("experiment", label, path, slug, model=str(exp.get("model") or "?"), task=task)
    settings = exp.get("settings") if isinstance(exp.get("settings"), dict) else {}
    facts = [("experiment", kind), ("model", sec.model), ("task", task), ("runs", len(runs)),
             ("created", exp.get("created"))]
    sec.facts = [(k, format_value(v)) for k, v in facts if v not in (None, "")]
    long = []
    for key, value in settings.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        if len(text) <= SETTING_CHARS:
            sec.facts.append((f"settings: {key}", text))
        else:
            long.append(key)
    if long:
        sec.notes.append(f"settings too long to show ({', '.join(long)}): see {path / EXPERIMENT_FILE}")
    title = {"ablation": "Ablation table", "cross_validation": "Cross-validation table",
             "language_transfer": "Language transfer table"}.get(kind, "Experiment table")
    if (path / TABLE_FILE).is_file():
        sec.tables.append(_read_csv_table(path / TABLE_FILE, f"{title} (mean ± std over seeds/folds)",
                                          f"{slug}_table", formatted=True))
    elif runs:
        sec.tables.append(_table_from_runs(exp, runs, task, f"{slug}_table", f"{title} (mean ± std, from "
                                           f"{EXPERIMENT_FILE}: table.csv is missing)"))
        sec.notes.append(f"{path / 'table.csv'} is missing: the table was computed from {EXPERIMENT_FILE}")
    if (path / RESULTS_FILE).is_file():
        sec.tables.append(_read_csv_table(path / RESULTS_FILE, "Every run", f"{slug}_results"))
    seen: set[str] = set()
    members = [r for r in runs if not (str(r.get("run_dir")) in seen or seen.add(str(r.get("run_dir"))))]
    for i, run in enumerate(members):
        cell = run.get("cell") or {}
        member_label = ", ".join(f"{k}={v}" for k, v in cell.items()) + f" seed {run.get('seed', '?')}"
        member_dir = path / str(run.get("run_dir", ""))
        rel = str(run.get("run_dir", "")).removeprefix("runs/")
        member_slug = f"{slug}/{i + 1:02d}-{_safe(rel.replace('/', '-'), 50)}"
        try:
            if source_kind(member_dir) != "run":
                raise ReportError(f"{member_dir}: not a training run")
            sec.members.append(read_run(member_dir, member_label, member_slug))
        except ReportError as exc:
            sec.notes.append(f"member run {member_label}: {exc}")
    return sec


def _table_from_runs(exp: dict[str, Any], runs: list[dict[str, Any]], task: str, name: str, title: str) -> Table:
    columns = [c for c in exp.get("table_columns") or [] if isinstance(c, str)]
    if not columns:
        columns = list(dict.fromkeys(k for r in runs for k in (r.get("cell") or {})))
    heads = expand_headlines(task, [r.get("metrics") or {} for r in runs])
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        cell = r.get("cell") or {}
        groups.setdefault(tuple(str(cell.get(c, "")) for c in columns), []).append(r.get("metrics") or {})
    rows = [list(key) + [_mean_std([m.get(k) for m in ms]) for k, _ in heads] + [len(ms)]
            for key, ms in groups.items()]
    return Table(title, name, columns + [t for _, t in heads] + ["n"], rows)


def read_source(path: Path, label: str, slug: str, skip: frozenset[Path] = frozenset()) -> Section:
    """The section of one report input; a run leaves out its evaluations that are inputs themselves (`skip`)."""
    kind = source_kind(path)
    if kind == "run":
        return read_run(path, label, slug, skip)
    return read_evaluation(path, label, slug) if kind == "evaluation" else read_experiment(path, label, slug)


def source_label(path: Path) -> str:
    """How an input is named in the report: the folder name, with the run's name for eval/<name> folders."""
    path = path.resolve()
    if path.parent.name in (EVAL_DIR, PLOTS_DIR) and path.parent.parent.name:
        return f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
    return path.name or str(path)


# ---------------------------------------------------------------- tables over inputs

def summary_tables(sections: Sequence[Section]) -> list[Table]:
    """One table per task kind: every run/evaluation split with the papers' headline metrics."""
    kinds = list(dict.fromkeys(s.task for s in sections if s.kind != "experiment" and s.splits))
    tables = []
    for kind in kinds:
        members = [s for s in sections if s.kind != "experiment" and s.task == kind]
        heads = expand_headlines(kind, [m for s in members for _, m in s.splits])
        first = 6      # source, kind, model, modalities, split, n
        rows = [[s.label, s.kind, s.model, s.modalities, split, m.get("n")] + [_headline(m, k) for k, _ in heads]
                for s in members for split, m in s.splits]
        title = "Summary" + ("" if len(kinds) == 1 else f": {kind}") + " (headline metrics per split)"
        digits = {first + i: 2 if percent_metric(k) else 4 for i, (k, _) in enumerate(heads)}
        tables.append(Table(title, f"summary_{_safe(kind)}", ["source", "kind", "model", "modalities", "split", "n"] +
                            [t for _, t in heads], rows, digits=digits,
                            note=f"task: {kind}; accuracy and F1 columns in percent, as in the papers (the "
                                 f"per-run tables below hold the raw metrics.json fractions)"))
    return tables


def _headline(metrics: dict[str, float], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else 100.0 * value if percent_metric(key) else value


def _unique_slugs(paths: Sequence[Path]) -> list[tuple[str, str]]:
    out = []
    for i, p in enumerate(paths):
        label = source_label(p)
        out.append((label, f"{i + 1:02d}-{_safe(label.replace('/', '-'))}"))
    return out


# ---------------------------------------------------------------- writing

def _all_tables(summary: list[Table], sections: Sequence[Section]) -> list[Table]:
    tables = list(summary)
    stack = list(sections)
    while stack:
        sec = stack.pop(0)
        tables += sec.tables
        stack = sec.members + stack
    return tables


def _all_figures(sections: Sequence[Section]) -> list[tuple[Section, Figure]]:
    out = []
    for sec in sections:
        out += [(sec, f) for _, figs in sec.figures for f in figs]
        out += _all_figures(sec.members)
    return out


def write_csv_table(table: Table, folder: Path) -> Path:
    """tables/<name>.csv: the source CSV verbatim, else the rows at full precision."""
    path = folder / f"{table.name.replace('/', '_')}.csv"
    if table.source_csv is not None:
        shutil.copyfile(table.source_csv, path)
        return path
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(table.columns)
        writer.writerows([[_csv_value(v) for v in row] for row in table.rows])
    return path


def build_report(paths: Sequence[str | Path], out_dir: str | Path, title: str | None = None) -> ReportFiles:
    """Write report.html, report.md, tables/*.csv and figures/ for run, evaluation and experiment directories."""

    if not paths:
        raise ReportError(f"no inputs: pass at least one directory ({EXPECTED})")
    paths = [Path(p).expanduser() for p in paths]
    problems = [f"{p}: {reason}" for p in paths for kind, reason in [_kind_or_reason(p)] if kind is None]
    if problems:
        raise ReportError(f"cannot report on {'; '.join(problems)}. Each input must be {EXPECTED}")
    inputs = frozenset(p.resolve() for p in paths)
    sections = []
    for p, (label, slug) in zip(paths, _unique_slugs(paths)):
        try:
            sections.append(read_source(p, label, slug, inputs))
        except ReportError as exc:        # an unreadable input is reported as such; the others still are
            sections.append(Section(source_kind(p), label, p, slug, notes=[f"left out: {exc}"]))
    summary = summary_tables(sections)
    out = Path(out_dir).expanduser()
    (out / "tables").mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    for sec, fig in _all_figures(sections):
        target = out / "figures" / sec.slug / fig.copy_name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fig.path, target)
        figures.append(target)
    csvs = [write_csv_table(t, out / "tables") for t in _all_tables(summary, sections)]
    meta = {"title": title or DEFAULT_TITLE, "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "inputs": [str(p) for p in paths]}
    html_path = out / "report.html"
    html_path.write_text(render_html(meta, summary, sections), encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(render_markdown(meta, summary, sections), encoding="utf-8")
    return ReportFiles(html=html_path, markdown=md_path, csv=csvs, figures=figures)
