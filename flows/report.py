"""Prefect flow `report`: the results report of run and experiment directories, attached as an artifact."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows import environment as settings
from flows.outcome import quiet_expected_failures

quiet_expected_failures()   # expected failures in the flow-run log: one line, no traceback

INLINE_IMAGE_BYTES = 1_500_000   # images up to this size are embedded in the artifact; larger ones stay links
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")


def inline_images(markdown: str, base: Path) -> str:
    """Markdown with its relative PNG links replaced by data: URIs, so the Prefect UI shows the figures."""
    def embed(match: re.Match) -> str:
        path = (base / match.group(2)) if not Path(match.group(2)).is_absolute() else Path(match.group(2))
        if not path.is_file() or path.stat().st_size > INLINE_IMAGE_BYTES:
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return _IMAGE.sub(embed, markdown)


def attach_report(paths: list[Path], out_dir: Path, title: str | None, key: str = "results-report") -> str:
    """Build the report of `paths` into `out_dir` and attach its Markdown (figures inline) as an artifact."""
    from models.report.build import build_report

    files = build_report(paths, out_dir, title=title)
    md_path = Path(files.markdown)
    create_markdown_artifact(key=key, markdown=inline_images(md_path.read_text(encoding="utf-8"), md_path.parent),
                             description=f"results report of {len(paths)} run(s); HTML: {files.html}")
    print(f"report: {files.html}")
    return str(files.html)


@flow(name="report", log_prints=True)
def report(run_dirs: list[str] | None = None, out_dir: str | None = None, title: str | None = None,
           runs: str | None = None) -> str:
    """The results report (HTML + Markdown + CSV) of run/experiment directories (default: the latest run)."""
    paths = [Path(p).expanduser() for p in run_dirs] if run_dirs else [settings.latest_run(settings.runs_dir(runs))]
    out = Path(out_dir).expanduser() if out_dir else paths[0] / "report"
    return attach_report(paths, out, title)
