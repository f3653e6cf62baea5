"""The results report as one self-contained HTML page: inline CSS, PNGs as data: URIs, no script, no network.

Every piece of text from the inputs (ids, paths, labels, table cells) is HTML-escaped.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any, Sequence

from models.report.document import Figure, Section, Table, numeric_columns

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a; margin: 0;
       background: #f6f7f9; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.35em; margin: 36px 0 8px; padding-top: 10px; border-top: 2px solid #d8dde3; }
h3 { font-size: 1.1em; margin: 22px 0 6px; }
h4 { font-size: 1em; margin: 18px 0 6px; }
.meta, .path, .note { color: #5b6570; font-size: 0.88em; }
.path { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
.badge { display: inline-block; font-size: 0.7em; font-weight: 600; padding: 2px 8px; margin-left: 8px;
         border-radius: 10px; background: #e3ecf7; color: #22507f; vertical-align: middle; }
nav ul { columns: 2; margin: 6px 0; padding-left: 20px; font-size: 0.92em; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 0.88em; }
th, td { border: 1px solid #d3d9df; padding: 4px 9px; text-align: right; }
th { background: #eef1f4; font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
td.text, th.text { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.facts td { text-align: left; }
table.facts td:first-child { color: #5b6570; white-space: nowrap; }
.tablewrap { overflow-x: auto; }
ul.notes { color: #8a4b00; font-size: 0.9em; }
.figures { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; padding: 8px; border: 1px solid #e1e5ea; border-radius: 6px; background: #fff;
         max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.82em; color: #454f59; margin-top: 4px; max-width: 520px; }
details { margin: 10px 0; padding: 4px 12px; border: 1px solid #e1e5ea; border-radius: 6px; }
summary { cursor: pointer; font-weight: 600; padding: 4px 0; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def data_uri(fig: Figure) -> str:
    """The PNG as a data: URI (ValueError when the file is not a PNG)."""
    raw = fig.path.read_bytes()
    if not raw.startswith(PNG_MAGIC):
        raise ValueError(f"{fig.path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def table_html(table: Table, level: int = 3) -> str:
    """A table with its title (h<level>) and note."""
    align = ["" if num else ' class="text"' for num in numeric_columns(table)]
    head = "".join(f"<th{a}>{_e(c)}</th>" for c, a in zip(table.columns, align))
    body = []
    for row in table.rows:
        cells = "".join(f"<td{a}>{_e(v)}</td>" for v, a in zip(table.cells(row), align + [""] * len(row)))
        body.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{_e(table.note)}</p>' if table.note else ""
    return (f"<h{level}>{_e(table.title)}</h{level}>{note}<div class=\"tablewrap\"><table>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _figures_html(groups: list[tuple[str, list[Figure]]], level: int, notes: list[str]) -> str:
    parts = []
    for group, figs in groups:
        items = []
        for fig in figs:
            try:
                src = data_uri(fig)
            except (OSError, ValueError) as exc:
                notes.append(f"figure {fig.path.name} left out: {exc}")
                continue
            items.append(f'<figure><img src="{src}" alt="{_e(fig.caption)}" title="{_e(fig.path.name)}">'
                         f"<figcaption>{_e(fig.caption)}</figcaption></figure>")
        if items:
            parts.append(f"<h{level}>Figures: {_e(group)}</h{level}><div class=\"figures\">{''.join(items)}</div>")
    return "".join(parts)


def section_html(sec: Section, level: int = 2) -> str:
    """One input's section: facts, notes, tables, figures, and (collapsed) member runs."""
    out = [f'<section id="{_e(sec.slug)}"><h{level}>{_e(sec.label)}<span class="badge">{_e(sec.kind)}</span>'
           f'</h{level}><p class="path">{_e(sec.path)}</p>']
    if sec.facts:
        rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sec.facts)
        out.append(f'<table class="facts"><tbody>{rows}</tbody></table>')
    out += [table_html(t, level + 1) for t in sec.tables]
    notes = list(sec.notes)
    out.append(_figures_html(sec.figures, level + 1, notes))
    if sec.members:
        out.append(f"<h{level + 1}>Member runs ({len(sec.members)})</h{level + 1}>")
        for member in sec.members:
            out.append(f"<details><summary>{_e(member.label)}</summary>{section_html(member, level + 2)}</details>")
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    out.append("</section>")
    return "".join(out)


def render_html(meta: dict[str, Any], summary: Sequence[Table], sections: Sequence[Section]) -> str:
    """The whole page."""
    toc = "".join(f'<li><a href="#{_e(s.slug)}">{_e(s.label)}</a> ({_e(s.kind)})</li>' for s in sections)
    inputs = "".join(f'<li class="path">{_e(p)}</li>' for p in meta["inputs"])
    summary_html = "".join(table_html(t, 3) for t in summary) or \
        '<p class="note">No training runs or evaluations among the inputs (see the experiment tables below).</p>'
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(meta['title'])}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{_e(meta['title'])}</h1><p class=\"meta\">generated {_e(meta['generated'])} from "
        f"{len(meta['inputs'])} input(s)</p><ul>{inputs}</ul>"
        f"<nav><strong>Contents</strong><ul><li><a href=\"#summary\">Summary</a></li>{toc}</ul></nav>"
        f"<section id=\"summary\"><h2>Summary</h2>{summary_html}</section>"
        + "".join(section_html(s) for s in sections)
        + "</main></body></html>\n"
    )
