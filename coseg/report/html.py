"""Static HTML building blocks for the reports: escaping, sortable tables, image cells, the page frame.

A report is one self-contained file: inline CSS, an inline sort script, images linked by relative paths to PNG
files written beside it. Nothing is loaded from the network. Every piece of text from the data (file and group
names, config values) goes through :func:`esc`."""
from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union
from urllib.parse import quote

from coseg.data.io import printable

Cell = Union[str, int, float, None]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:1em 1.5em;
color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-bottom:.3em} .note{color:#666;font-size:.9em} nav a{margin-right:1em}
table.data{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
table.data th,table.data td{border:1px solid #ccc;padding:3px 8px;text-align:left}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#f2f2f2;user-select:none}
table.sortable th:hover{background:#e4e4e4} th.asc:after{content:" \\25B2"} th.desc:after{content:" \\25BC"}
.tiles{display:flex;flex-wrap:wrap;gap:14px 28px;margin-bottom:1.2em}
.tile{display:flex;gap:6px;align-items:flex-start;max-width:100%;overflow-x:auto}
.tile figure{margin:0;width:var(--cell);flex:none} .tile img{display:block;max-width:100%;border:1px solid #bbb}
.tile figcaption{font-size:.8em;color:#444;word-break:break-all}
.right img{border:3px solid #2a9d3a} .wrong img{border:3px solid #d33}
.mark-right{color:#2a9d3a;font-weight:700} .mark-wrong{color:#d33;font-weight:700}
pre.config{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow:auto;font-size:.85em}
img.plot{width:49%;min-width:320px;border:1px solid #ddd;vertical-align:top}
"""

# Click a header to sort its table; numbers sort by the cell's data-value, blanks always last.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(ascending ? "asc" : "desc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[column];
        var value = cell.getAttribute("data-value");
        if (value === null) { return cell.textContent; }
        return value === "" ? null : parseFloat(value);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def esc(value: object) -> str:
    """Text safe inside HTML elements and quoted attributes (``& < > " '`` escaped; undecodable bytes of a file
    name and control characters, line breaks included, shown as ``\\xNN``: :func:`esc_lines` keeps lines)."""
    text = printable(value) if isinstance(value, (str, os.PathLike)) else str(value)
    return html.escape(text, quote=True)


def esc_lines(text: str) -> str:
    """Multi-line text (a config file) safe inside ``<pre>``: each line as :func:`esc` shows it (other control
    characters as ``\\xNN``), the line breaks kept."""
    return "\n".join(esc(line) for line in text.splitlines())


MISSING = "–"
"""How a report shows a missing number (NaN), in tables and captions alike."""


def shown_number(value: float, spec: str) -> str:
    """``value`` formatted by ``spec`` (``".3f"``), or :data:`MISSING` when it is NaN."""
    return MISSING if math.isnan(value) else format(value, spec)


NumberFormat = Union[str, Callable[[float], str]]  # a format spec (".2f") or a function giving a float's text


def _cell(value: Cell, number_format: NumberFormat) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{esc('' if value is None else value)}</td>"
    if isinstance(value, float) and math.isnan(value):
        return f'<td class="num" data-value="">{MISSING}</td>'
    if not isinstance(value, float):
        shown = str(value)
    else:
        shown = number_format(value) if callable(number_format) else format(value, number_format)
    # the sort script's parseFloat reads "Infinity", not Python's "inf"
    sort_value = "Infinity" if value == math.inf else "-Infinity" if value == -math.inf else repr(value)
    return f'<td class="num" data-value="{sort_value}">{shown}</td>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], sortable: bool = True,
          number_format: NumberFormat = ".2f", table_id: Optional[str] = None) -> str:
    """An HTML table; numbers right-aligned, floats as ``number_format`` (NaN shown as – and sorted last); with
    ``sortable`` a click on a header sorts the rows (the inline script). Rows keep the given order until then."""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    classes = "data sortable" if sortable else "data"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(v, number_format) for v in row) + "</tr>" for row in rows)
    return f'<table class="{classes}"{ident}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def link(files: Path, name: str) -> str:
    """The relative URL of the generated file ``name`` in a page's files folder, which is named after the page (any
    characters: ``#``, ``%``, spaces, undecodable bytes are percent-encoded)."""
    return f"{quote(os.fsencode(files.name))}/{name}"


def image(src: str, alt: str, caption: str = "", css_class: str = "") -> str:
    """A figure showing the PNG at relative URL ``src`` (from :func:`link`) with an escaped caption."""
    cls = f' class="{esc(css_class)}"' if css_class else ""
    text = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure{cls}><img src="{esc(src)}" alt="{esc(alt)}">{text}</figure>'


def tiles(rows: Sequence[Sequence[str]], width: int) -> str:
    """Tiles of figures flowing across the page, one tile per entry of ``rows`` (its cells, HTML, side by side,
    each ``width`` CSS pixels wide): e.g. image | ground truth | prediction, or a query and its neighbours."""
    body = "".join('<div class="tile">' + "".join(cells) + "</div>" for cells in rows)
    return f'<div class="tiles" style="--cell:{width}px">{body}</div>'



@dataclass
class Page:
    """An HTML page assembled from sections (``build`` writes it with its PNG folder)."""

    title: str
    intro: str = ""
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, heading, body HTML)

    def add(self, heading: str, body: str) -> None:
        self.sections.append((f"s{len(self.sections) + 1}", heading, body))

    def render(self) -> str:
        nav = " ".join(f'<a href="#{a}">{esc(h)}</a>' for a, h, _ in self.sections)
        parts = [f'<section id="{a}"><h2>{esc(h)}</h2>\n{body}\n</section>' for a, h, body in self.sections]
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                f"<title>{esc(self.title)}</title>"
                f"<style>{_CSS}</style></head>\n<body>\n<h1>{esc(self.title)}</h1>\n"
                f"<p class=\"note\">{self.intro}</p>\n<nav>{nav}</nav>\n" + "\n".join(parts)
                + f"\n<script>{_SORT_SCRIPT}</script>\n</body></html>\n")
