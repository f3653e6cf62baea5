"""The parameter table of a fidelity page (docs/fidelity/<model>.md), so that tests assert the counts it prints."""

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
