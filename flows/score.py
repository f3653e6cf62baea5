"""Prefect flow `score`: a folder of new videos -> extract what is missing -> a scores CSV/Parquet + artifact."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import environment as settings
from flows.extract import extract_media
from flows.outcome import completed, quiet_expected_failures
from flows.runners import run_task, task_runner
from pipeline.files import markdown_table

quiet_expected_failures()   # expected failures in the flow-run log: one line, no traceback

SCORE_FORMATS = ("csv", "parquet")


def scores_markdown(frame: Any, out_file: Path, run_dir: Path, max_rows: int) -> str:
    """Markdown summary of a scores table: counts, mean score, and the first `max_rows` rows."""
    lines = [f"# Scores: {out_file}", "", f"model run: `{run_dir}`", ""]
    ok = frame[frame["status"] != "failed"] if "status" in frame else frame
    lines.append(f"{len(frame)} clip(s), {len(ok)} scored, {len(frame) - len(ok)} failed")
    if "score" in frame and len(ok):
        lines.append(f"; mean score {ok['score'].astype(float).mean():+.3f}")
    rows = [[f"{v:+.3f}" if isinstance(v, float) else v for v in row] for row in frame.head(max_rows).values.tolist()]
    lines += ["", markdown_table(list(frame.columns), rows).rstrip("\n")]
    if len(frame) > max_rows:
        lines.append(f"\n... {len(frame) - max_rows} more rows in the file")
    return "\n".join(lines) + "\n"


@task(name="score-clips", cache_policy=NO_CACHE)
def score_clips(paths: list[str], run_dir: str, cache: str, out_file: str, device: str) -> Any:
    """Score cached clips with a model run into `out_file` (`models.scoring.score_media`); returns the table."""
    from models.scoring import score_media

    return score_media(paths, Path(run_dir), cache, out_file=Path(out_file), device=device)


@flow(name="score", log_prints=True)
def score(folder: str | None = None, run_dir: str | None = None, cache: str | None = None, out: str | None = None,
          fmt: str = "csv", device: str = "auto", orchestration: dict[str, Any] | None = None,
          artifact_rows: int = 50) -> str:
    """Score every video under `folder` (or SENTIFLOW_INBOX) with a model run (default: the latest one); with a
    Dask task runner (`orchestration.task_runner`) the extraction and the scoring run on its workers."""
    from models.data import DataConfig
    from models.run_dir import read_run_record
    from models.scoring import SCORED
    from pipeline.corpora.folder import load_folder

    if fmt not in SCORE_FORMATS:
        raise settings.FlowSettingError(f"fmt must be one of {', '.join(SCORE_FORMATS)}, got {fmt!r}")
    videos = load_folder(settings.inbox_dir(folder))
    run = Path(run_dir).expanduser() if run_dir else settings.latest_run(settings.runs_dir())
    cache_path = str(settings.cache_dir(cache))
    record = read_run_record(run)
    data = DataConfig.from_dict(record["data"])
    needed = data.extractors()   # word-aligned runs read "aligned", not the unaligned sources
    print(f"scoring {len(videos.media)} video(s) under {videos.root} with {run} (extractors {', '.join(needed)})")
    orch = settings.OrchestrationConfig.from_dict(orchestration or {}, where="orchestration")
    out_file = Path(out).expanduser() if out else \
        settings.scores_dir() / f"scores-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.{fmt}"
    with task_runner(orch.task_runner) as runner:
        extract_media(videos.media, cache_path, record["features"], device, needed, orchestration=orchestration,
                      artifact_prefix="score-extract", runner=runner)
        frame = run_task(runner, score_clips, paths=[str(p) for p in videos.media], run_dir=str(run),
                         cache=cache_path, out_file=str(out_file), device=device)
    create_markdown_artifact(key="scores", markdown=scores_markdown(frame, out_file, run, artifact_rows),
                             description=f"{len(frame)} clip(s) scored into {out_file}")
    print(f"scores: {out_file}")
    unscored = [{"file": r.get("path") or r.get("id"), "reason": f"{r.get('status')}: {r.get('reason') or ''}"}
                for r in frame.to_dict("records") if r.get("status") != SCORED]
    return completed(f"{len(frame) - len(unscored)} of {len(frame)} clip(s) scored into {out_file}", unscored,
                     f"the scores and score-extract-summary artifacts and {out_file}", str(out_file))
