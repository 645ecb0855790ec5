"""HTML building blocks of the report: escaped text, tables, base64 images, sections, the page."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Iterable

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f5f7fa;
     font-size:14px;line-height:1.45}
main{max-width:1280px;margin:0 auto;padding:18px 28px 60px}
h1{font-size:26px;margin:10px 0 4px} h2{font-size:20px;margin:0 0 8px;border-bottom:2px solid #d5dde6;padding-bottom:4px}
h3{font-size:16px;margin:16px 0 6px} h4{font-size:14px;margin:12px 0 4px;color:#34495e}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:16px 0}
nav{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:8px 16px;margin:12px 0}
nav a{margin-right:14px;color:#1f5fa8;text-decoration:none;white-space:nowrap}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}
th,td{border:1px solid #d9e0e7;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#eef2f6;text-align:center} td.t{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
img{max-width:100%;height:auto;border:1px solid #e3e8ee;border-radius:4px;margin:4px 0}
.figs{display:flex;flex-wrap:wrap;gap:12px} .figs figure{margin:0;flex:1 1 560px;max-width:100%}
figcaption{font-size:12px;color:#55606c}
.notrun{background:#fff6e5;border-left:4px solid #f0a500;padding:6px 10px;margin:6px 0}
.fail{background:#fdecea;border-left:4px solid #d93025;padding:6px 10px;margin:6px 0}
.caution{background:#eef4fb;border-left:4px solid #4a7fc1;padding:6px 10px;margin:6px 0}
.ok{color:#137333;font-weight:600} .bad{color:#b3261e;font-weight:600} .muted{color:#6b7785}
.verdict{padding:8px 12px;border-radius:6px;margin:6px 0} .v-yes{background:#e6f4ea} .v-no{background:#fdecea}
.v-mixed{background:#fff6e5}
pre{background:#f3f5f8;border:1px solid #e0e5ea;padding:8px;overflow-x:auto;font-size:12px;max-height:520px}
.kv td{text-align:left}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(v: Any, digits: int = 3) -> str:
    """Numbers to short strings (p-values in scientific notation when small)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int,)) or (hasattr(v, "dtype") and getattr(v, "dtype").kind in "iu"):
        return str(int(v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "–"
    if f != 0 and (abs(f) < 1e-3 or abs(f) >= 1e5):
        return f"{f:.2e}"
    return f"{f:.{digits}f}"


def table(df, *, max_rows: int = 40, columns: Iterable[str] | None = None, digits: int = 3,
          caption: str | None = None) -> str:
    """A compact HTML table of a DataFrame (text columns left-aligned, numbers formatted)."""
    if df is None or len(df) == 0:
        return '<p class="muted">(empty table)</p>'
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    more = len(df) - max_rows
    df = df.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for v in rec:
            is_text = isinstance(v, str)
            cells.append(f'<td class="t">{esc(v)}</td>' if is_text else f"<td>{esc(fmt(v, digits))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    tail = f'<p class="muted">… {more} more rows in the artefact file.</p>' if more > 0 else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{tail}"


def kv_table(d: dict) -> str:
    rows = "".join(f'<tr><th>{esc(k)}</th><td class="t">{esc(v)}</td></tr>' for k, v in d.items())
    return f'<table class="kv">{rows}</table>'


def image(path: str | Path, caption: str = "", width: int | None = None) -> str:
    """A PNG embedded as base64 (``<figure>``); a note when the file is missing."""
    p = Path(path)
    if not p.exists():
        return not_run(f"figure {p.name} missing")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    w = f' style="max-width:{width}px"' if width else ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img{w} alt="{esc(caption or p.stem)}" src="data:image/png;base64,{data}">{cap}</figure>'


def figs(*items: str) -> str:
    return '<div class="figs">' + "".join(items) + "</div>"


def not_run(reason: str) -> str:
    return f'<div class="notrun"><b>not run:</b> {esc(reason)}</div>'


def caution(text: str) -> str:
    """A highlighted reading note (a result that holds but needs care)."""
    return f'<div class="caution"><b>read with care:</b> {esc(text)}</div>'


def failed(reason: str) -> str:
    return f'<div class="fail"><b>failed:</b> {esc(reason)}</div>'


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    nav = "".join(f'<a href="#{esc(s)}">{esc(t)}</a>' for s, t, _ in sections)
    body = "".join(section(s, t, b) for s, t, b in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{CSS}</style></head>"
            f"<body><main><h1>{esc(title)}</h1><p class=\"muted\">{subtitle}</p><nav>{nav}</nav>{body}"
            "</main></body></html>")
