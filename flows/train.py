"""Prefect flow `train`: a labelled dataset's cached features -> a model run directory (via models.training)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import environment as settings
from flows.corpus import open_corpus
from flows.outcome import quiet_expected_failures
from flows.runners import run_task, task_runner
from pipeline.corpora.folds import require_split
from pipeline.files import markdown_table

quiet_expected_failures()   # expected failures in the flow-run log: one line, no traceback


def metrics_markdown(title: str, metrics: dict[str, Any]) -> str:
    """A markdown table of the scalar entries of a metrics dict."""
    flat: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict) and k == "metrics":
            for split, ms in v.items():
                flat.update({f"{split} {n}": x for n, x in (ms.items() if isinstance(ms, dict) else [])})
        else:
            flat[k] = v
    rows = [[k, f"{v:.4f}" if isinstance(v, float) and not isinstance(v, bool) else v]
            for k, v in flat.items() if isinstance(v, (int, float, str))]
    return f"# {title}\n\n" + markdown_table(["metric", "value"], rows)


def with_dataset_task(options: dict[str, Any] | None, task: str) -> dict[str, Any]:
    """Training options, with the dataset's own task (UR-FUNNY: binary humor, labels 0/1) unless `task:` is set."""
    opts = dict(options or {})
    if "task" not in opts and task == "binary":
        opts["task"] = {"kind": "binary", "threshold": 0.5}
    return opts


@task(name="train-model", cache_policy=NO_CACHE)
def train_run(cache: str, table: Any, model: str, out_dir: str, config_path: str | None, device: str,
              modalities: list[str] | None, options: dict[str, Any], recipe: str | None, extract_missing: bool) -> str:
    """Train `model` from the cache into `out_dir` (`models.training.train_model`); returns the run directory."""
    from models.training import train_model

    return str(train_model(Path(cache), table, model, Path(out_dir), config_path=config_path, device=device,
                           modalities=modalities, options=options, recipe=recipe, extract_missing=extract_missing))


@flow(name="train", log_prints=True)
def train(dataset: str = "mosi", root: str | None = None, model: str = "vae_amdt", cache: str | None = None,
          runs: str | None = None, run_name: str | None = None, config: str | None = None, device: str = "auto",
          modalities: list[str] | None = None, options: dict[str, Any] | None = None, folds: str | None = None,
          language: str | None = None, extract_missing: bool = False, recipe: str | None = None,
          orchestration: dict[str, Any] | None = None) -> str:
    """Train `model` on a labelled dataset's cached features; returns the run directory. With a Dask task runner
    (`orchestration.task_runner`) the training runs on one of its workers (e.g. on a host with a GPU)."""
    from models.run_dir import METRICS_FILE

    ds = open_corpus(dataset, root, folds, language, labelled_for="training", splits=True)
    require_split(ds, "train", "training")
    name = run_name or f"{dataset}-{model}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    out_dir = settings.runs_dir(runs) / name
    orch = settings.OrchestrationConfig.from_dict(orchestration or {}, where="orchestration")
    with task_runner(orch.task_runner) as runner:
        run_dir = run_task(runner, train_run, cache=str(settings.cache_dir(cache)), table=ds.table, model=model,
                           out_dir=str(out_dir), config_path=settings.config_path(config), device=device,
                           modalities=modalities, options=with_dataset_task(options, ds.task), recipe=recipe,
                           extract_missing=extract_missing)
    summary = _read_json(Path(run_dir) / METRICS_FILE)
    create_markdown_artifact(key="train-summary", markdown=metrics_markdown(
        f"{model} on {dataset}: {run_dir}", summary if isinstance(summary, dict) else {}),
        description=f"model run {run_dir}")
    print(f"model run: {run_dir}")
    return str(run_dir)


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
