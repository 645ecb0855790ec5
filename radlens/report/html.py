"""HTML building blocks of the report: escaped text, tables, base64 images, sections, the page."""
from __future__ import annotations

import base64
import contextvars
import html
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f5f7fa;
     font-size:14px;line-height:1.45}
main{max-width:1280px;margin:0 auto;padding:18px 28px 60px}
h1{font-size:26px;margin:10px 0 4px} h2{font-size:20px;margin:0 0 8px;border-bottom:2px solid #d5dde6;padding-bottom:4px}
h3{font-size:16px;margin:16px 0 6px} h4{font-size:14px;margin:12px 0 4px;color:#34495e}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:16px 0}
nav{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:8px 16px;margin:12px 0;display:flex;flex-wrap:wrap;row-gap:4px}
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
.tw{overflow-x:auto;max-width:100%} td.t{max-width:560px}
figure .links{font-size:11.5px;margin-left:6px} figure .links a{color:#1f5fa8}
.figs figure.wide{flex-basis:100%}
.verdicts{list-style:none;padding:0;margin:6px 0} .verdicts li{padding:6px 10px;margin:4px 0;border-radius:6px}
.verdicts li.ok{background:#e6f4ea;color:inherit;font-weight:normal} .verdicts li.mixed{background:#fff6e5}
.verdicts li.bad{background:#fdecea;color:inherit;font-weight:normal} .verdicts li.info{background:#eef4fb}
.verdicts a,.warnbox a{color:#1f5fa8}
.warnbox{background:#fff8e1;border:1px solid #f0c36d;border-left:5px solid #f0a500;border-radius:6px;padding:8px 14px;
         margin:10px 0} .warnbox h3{margin:2px 0 6px} .warnbox ul{margin:4px 0;padding-left:20px}
.warnbox li.error{color:#b3261e} .warnbox .tag{font-size:11px;color:#6b7785}
"""


#: folder the page is written to: figure links are relative to it (set by :func:`radlens.report.report`)
LINK_BASE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("LINK_BASE", default=None)
#: run folder: truncated tables name their file relative to it
RUN_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("RUN_DIR", default=None)


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


def rel_name(path: str | Path) -> str:
    """``path`` relative to the run folder when inside it (for messages), else as given."""
    p, base = Path(path), RUN_DIR.get()
    if base is not None:
        try:
            return p.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return str(p)


def table(df, *, max_rows: int = 40, columns: Iterable[str] | None = None, digits: int = 3,
          caption: str | None = None, source: str | Path | None = None) -> str:
    """A compact HTML table of a DataFrame (text columns left-aligned, numbers formatted), in a box
    that scrolls sideways instead of overflowing; a truncated table names ``source``, the file that
    holds every row."""
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
            # long ;- or ,-separated lists may wrap after a separator (never inside a name)
            cells.append(f'<td class="t">{"<wbr>".join(esc(x) for x in re.split(r"(?<=[;,])", v))}</td>' if is_text
                         else f"<td>{esc(fmt(v, digits))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    where = f"<code>{esc(rel_name(source))}</code>" if source is not None else "the artefact file"
    tail = f'<p class="muted">… {more} more rows in {where}.</p>' if more > 0 else ""
    return f'<div class="tw"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{tail}'


def kv_table(d: dict) -> str:
    rows = "".join(f'<tr><th>{esc(k)}</th><td class="t">{esc(v)}</td></tr>' for k, v in d.items())
    return f'<table class="kv">{rows}</table>'


def _href(p: Path) -> str:
    base = LINK_BASE.get()
    if base is None:
        return p.resolve().as_uri()
    return Path(os.path.relpath(p.resolve(), base.resolve())).as_posix()


def image(path: str | Path, caption: str = "", width: int | None = None, wide: bool = False) -> str:
    """A PNG embedded as base64 (``<figure>``) with links to the PNG and SVG files; a note when missing.

    ``wide``: the figure takes the whole row (legends and small text stay readable).
    """
    p = Path(path)
    if not p.exists():
        return not_run(f"figure {p.name} missing")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    w = f' style="max-width:{width}px"' if width else ""
    links = [f'<a href="{esc(_href(q))}">{q.suffix[1:].upper()}</a>' for q in (p, p.with_suffix(".svg")) if q.exists()]
    cap = (f"<figcaption>{esc(caption)}<span class=\"links\">[{' · '.join(links)}]</span></figcaption>")
    cls = ' class="wide"' if wide else ""
    return f'<figure{cls}><img{w} alt="{esc(caption or p.stem)}" src="data:image/png;base64,{data}">{cap}</figure>'


def figs(*items: str) -> str:
    return '<div class="figs">' + "".join(items) + "</div>"


def not_run(reason: str) -> str:
    return f'<div class="notrun"><b>not run:</b> {esc(reason)}</div>'


def caution(text: str) -> str:
    """A highlighted reading note (a result that holds but needs care)."""
    return f'<div class="caution"><b>read with care:</b> {esc(text)}</div>'


def failed(reason: str) -> str:
    return f'<div class="fail"><b>failed:</b> {esc(reason)}</div>'


def verdict_list(verdicts: list[dict]) -> str:
    """One line per analysis, linking to its section."""
    if not verdicts:
        return '<p class="muted">No analysis produced a result.</p>'
    items = "".join(f'<li class="{esc(v.get("status", "info"))}">{esc(v["text"])} '
                    f'<a href="#{esc(v["section"])}">→ section</a></li>' for v in verdicts)
    return f'<ul class="verdicts">{items}</ul>'


def warnings_box(warnings: list[dict]) -> str:
    """Every failed check of the run, each linking to the section that shows it."""
    if not warnings:
        return '<div class="warnbox" id="warnings" style="background:#e6f4ea;border-color:#8bc79a"><b>Warnings:</b> none — ' \
               'every sanity check passed and no weak fit, unlearned task or near-chance score was found.</div>'
    n_err = sum(w.get("severity") == "error" for w in warnings)
    items = "".join(f'<li class="{esc(w.get("severity", "warning"))}"><span class="tag">[{esc(w["analysis"])}]</span> '
                    f'{esc(w["message"])} <a href="#{esc(w["section"])}">→ section</a></li>' for w in warnings)
    head = f"Warnings ({len(warnings)}" + (f", {n_err} errors" if n_err else "") + ")"
    return (f'<div class="warnbox" id="warnings"><h3>{head}</h3><p class="muted">Every failed sanity check, weak fit, '
            "unlearned task, near-chance score, small-count ranking and failed stage of this run. Results they "
            f"touch are shown below as computed; read them with these in mind.</p><ul>{items}</ul></div>")


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]], top: str = "") -> str:
    """The whole page: title, status line, ``top`` (findings and warnings), navigation, sections."""
    nav = "".join(f'<a href="#{esc(s)}">{esc(t.split(":")[0])}</a>' for s, t, _ in sections)
    body = "".join(section(s, t, b) for s, t, b in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{CSS}</style></head>"
            f"<body><main><h1>{esc(title)}</h1><p class=\"muted\">{subtitle}</p>{top}<nav>{nav}</nav>{body}"
            "</main></body></html>")
