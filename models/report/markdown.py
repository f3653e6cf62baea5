"""The results report as Markdown: the same tables as the HTML page, figures linked to copies in figures/."""

from __future__ import annotations

import re
from html import escape
from typing import Any, Sequence

from models.report.document import Section, Table, numeric_columns
from pipeline.files import markdown_table

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def md_text(value: Any) -> str:
    """Text safe in a Markdown table cell or heading: HTML escaped, Markdown specials backslashed, one line."""
    text = escape(str(value), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\r", " ").replace("\n", " ")


def table_markdown(table: Table, level: int = 3) -> list[str]:
    """A pipe table with its heading and note."""
    lines = [f"{'#' * level} {md_text(table.title)}", ""]
    if table.note:
        lines += [f"_{md_text(table.note)}_", ""]
    lines += markdown_table(table.columns, [table.cells(row) for row in table.rows], numeric_columns(table),
                            cell=md_text).rstrip("\n").split("\n")
    return lines + [""]


def section_markdown(sec: Section, level: int = 2) -> list[str]:
    """One input's section: facts, tables, figures (relative links), member runs."""
    lines = [f"{'#' * level} {md_text(sec.label)} ({md_text(sec.kind)})", "", md_text(sec.path), ""]
    lines += [f"- {md_text(k)}: {md_text(v)}" for k, v in sec.facts] + ([""] if sec.facts else [])
    for t in sec.tables:
        lines += table_markdown(t, level + 1)
    for group, figs in sec.figures:
        lines += [f"{'#' * (level + 1)} Figures: {md_text(group)}", ""]
        for fig in figs:
            lines += [f"![{md_text(fig.caption)}](figures/{sec.slug}/{fig.copy_name})", "",
                      f"_{md_text(fig.caption)}_", ""]
    for member in sec.members:
        lines += section_markdown(member, min(level + 1, 6))
    if sec.notes:
        lines += ["Notes:", ""] + [f"- {md_text(n)}" for n in sec.notes] + [""]
    return lines


def render_markdown(meta: dict[str, Any], summary: Sequence[Table], sections: Sequence[Section]) -> str:
    """The whole report as Markdown."""
    lines = [f"# {md_text(meta['title'])}", "", f"Generated {md_text(meta['generated'])} from:", ""]
    lines += [f"- {md_text(p)}" for p in meta["inputs"]] + ["", "## Summary", ""]
    for t in summary:
        lines += table_markdown(t, 3)
    if not summary:
        lines += ["No training runs or evaluations among the inputs (see the experiment tables below).", ""]
    for sec in sections:
        lines += section_markdown(sec)
    return "\n".join(lines) + "\n"
