"""Prefect flow `evaluate`: a labelled split + a model run -> metrics and plots (PNG files) as artifacts."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import environment as settings
from flows.corpus import open_corpus
from flows.outcome import quiet_expected_failures
from flows.report import attach_report
from flows.train import metrics_markdown

quiet_expected_failures()   # expected failures in the flow-run log: one line, no traceback

INLINE_PLOT_BYTES = 1_500_000   # plots up to this size are embedded in the artifact; larger ones are linked


def plots_markdown(plots: dict[str, str]) -> str:
    """Markdown showing each PNG plot inline (base64) when small enough, else its path."""
    lines = ["# Plots", ""]
    for name, path in plots.items():
        p = Path(path)
        if p.is_file() and p.stat().st_size <= INLINE_PLOT_BYTES:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            lines += [f"## {name}", "", f"![{name}](data:image/png;base64,{data})", "", f"`{p}`", ""]
        else:
            lines += [f"## {name}", "", f"`{p}`", ""]
    return "\n".join(lines)


@flow(name="evaluate", log_prints=True)
def evaluate(run_dir: str | None = None, dataset: str = "mosi", root: str | None = None, split: str = "test",
             cache: str | None = None, out_dir: str | None = None, device: str = "auto", folds: str | None = None,
             language: str | None = None, extract_missing: bool = True) -> dict[str, Any]:
    """Metrics of a model run on one split of a labelled dataset, with plots, as Prefect artifacts."""
    from models.evaluation import evaluate_run
    from models.run_dir import EVAL_DIR
    from pipeline.corpora.folds import require_split
    from pipeline.labels import MODES, LabelTable

    if split not in MODES + ("all",):
        raise settings.FlowSettingError(f"split must be one of {', '.join(MODES)} or all, got {split!r}")
    run = Path(run_dir).expanduser() if run_dir else settings.latest_run(settings.runs_dir())
    ds = open_corpus(dataset, root, folds, language, labelled_for="evaluation", splits=split != "all")
    table: LabelTable = ds.table if split == "all" else require_split(ds, split, "evaluation")
    target = Path(out_dir).expanduser() if out_dir else run / EVAL_DIR / f"{dataset}-{split}"
    metrics = evaluate_run(run, table, settings.cache_dir(cache), out_dir=target, device=device,
                           extract_missing=extract_missing)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    create_table_artifact(key="evaluate-metrics", table=[{"metric": k, "value": v} for k, v in scalars.items()],
                          description=f"{run} on {dataset} {split} ({len(table)} rows)")
    create_markdown_artifact(key="evaluate-report", markdown=metrics_markdown(f"{run.name} on {dataset} {split}",
                             scalars) + "\n" + plots_markdown(metrics.get("plots", {})),
                             description=f"metrics and plots of {run} on {dataset} {split}")
    print({k: v for k, v in scalars.items()})
    metrics["report"] = attach_report([run, target], target / "report", f"{run.name} on {dataset} {split}")
    return metrics
