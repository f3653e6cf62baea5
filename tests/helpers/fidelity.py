"""The parameter tables of the fidelity pages (docs/fidelity/<model>.md), so that tests assert the counts they print."""

from __future__ import annotations

import re

from tests.helpers.paths import ROOT

FIDELITY_DIR = ROOT / "docs" / "fidelity"
PARAMETERS_HEADING = "## Parameters"
_ROW = re.compile(r"^\|\s*(?P<row>`[a-z0-9_]+`[^|]*?)\s*\|\s*(?P<paper>[\d,]+)\s*\|\s*(?P<ours>[\d,]+)\s*\|")


def parameter_table(page: str) -> dict[str, tuple[int, int]]:
    """{row: (parameters with the paper's input sizes, with our default features)} of the page's "## Parameters"
    table, rows `| `name` label | 1,234 | 5,678 | ...` keyed "name label" (backticks dropped)."""
    text = (FIDELITY_DIR / f"{page}.md").read_text(encoding="utf-8")
    section = text.split(PARAMETERS_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = _ROW.match(line)
        if m:
            rows[m["row"].replace("`", "")] = (int(m["paper"].replace(",", "")), int(m["ours"].replace(",", "")))
    if not rows:
        raise AssertionError(f"{page}.md has no parameter rows under {PARAMETERS_HEADING!r}")
    return rows


def parameter_rows(model: str) -> list[tuple[str, dict[str, int], int]]:
    """(configuration, input dims, our parameter count) of each row of the document's "Parameters" table."""
    text = (FIDELITY_DIR / f"{model}.md").read_text(encoding="utf-8")
    section = text.split(PARAMETERS_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"[\d,]+", cells[3]):
            continue
        dims = {m: int(d) for m, d in re.findall(r"(text|audio|visual) (\d+)", cells[1])}
        rows.append((cells[0], dims, int(cells[3].replace(",", ""))))
    return rows


def check_parameter_table(model: str, n_rows: int) -> None:
    """Build `model` with each row's inputs and assert the count the document prints (and its number of rows)."""
    from models.base import ModelSpec, count_parameters
    from models.registry import build_model

    rows = parameter_rows(model)
    assert len(rows) == n_rows, rows
    for label, dims, count in rows:
        spec = ModelSpec(dims=dims, seq_lens={m: 10 for m in dims})
        assert count_parameters(build_model(model, spec)) == count, label
