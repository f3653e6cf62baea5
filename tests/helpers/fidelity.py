"""The parameter tables of the fidelity documents (docs/fidelity/<model>.md), so tests check the numbers they print."""

from __future__ import annotations

import re

from tests.helpers.paths import ROOT

FIDELITY_DIR = ROOT / "docs" / "fidelity"


def parameter_rows(model: str) -> list[tuple[str, dict[str, int], int]]:
    """(configuration, input dims, our parameter count) of each row of the document's "Parameters" table."""
    text = (FIDELITY_DIR / f"{model}.md").read_text(encoding="utf-8")
    section = text.split("## Parameters", 1)[1]
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
