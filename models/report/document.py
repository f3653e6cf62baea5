"""What a report is made of: tables, figures and sections, and how a table cell is shown."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def is_number(v: Any) -> bool:
    """True for ints and floats (not bools): the cells shown right-aligned."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class Table:
    """A table shown in HTML and Markdown and written as tables/<name>.csv."""

    title: str
    name: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    source_csv: Path | None = None      # copied verbatim instead of written from rows
    digits: dict[int, int] = field(default_factory=dict)   # decimals shown per column index (default 4)

    def cells(self, row: list[Any]) -> list[str]:
        """A row's cells as shown in HTML and Markdown."""
        return [format_value(v, self.digits.get(i, 4)) for i, v in enumerate(row)]


@dataclass
class Figure:
    """A PNG of a source, with its caption and the name of its copy under figures/."""

    path: Path
    caption: str
    copy_name: str


@dataclass
class Section:
    """One input (or an experiment's member run) as shown in the report."""

    kind: str                       # "run" | "evaluation" | "experiment"
    label: str
    path: Path
    slug: str
    model: str = ""
    task: str = "regression"
    modalities: str = ""            # e.g. "TAV", "T" (the papers' modality codes)
    facts: list[tuple[str, str]] = field(default_factory=list)
    splits: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, list[Figure]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    members: list["Section"] = field(default_factory=list)


def numeric_columns(table: Table) -> list[bool]:
    """Per column: True when every filled cell is a number (right-aligned in HTML and Markdown)."""
    return [all(is_number(row[i]) for row in table.rows if i < len(row) and row[i] is not None) and bool(table.rows)
            for i in range(len(table.columns))]


def format_value(v: Any, digits: int = 4) -> str:
    """A table cell as text: floats to `digits` decimals, counts as integers, missing as an en dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)
