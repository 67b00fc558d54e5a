"""Layout checks for the browser test: what a page measures in Chromium, and what fails.

tests/test_browser.py loads every page and runs :data:`MEASURE_JS` in it; :func:`layout_rows`
turns that measurement into one :class:`Row` per chart, legend, image and table, and
:func:`format_report` / :func:`failure_message` write them for a human.

The text column is the *content box* of ``article.bd-article`` (sphinx-book-theme: the
element every section, output and table of a page sits in; its padding is not text).
An element fits when its rendered width (``getBoundingClientRect``) is at most the column
width plus :data:`TOLERANCE_PX`, it lies within the column horizontally, and it makes no
container scroll sideways (a table the reader must scroll sideways fails too).
:func:`reader_problems` checks the rest of what a reader sees (raw Markdown, the verdict
tables, the Answer box, the repository link).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

#: The element holding a page's text in sphinx-book-theme (its content box is the column).
COLUMN_SELECTOR = "article.bd-article"
#: Rounding slack for sub-pixel layout (px).
TOLERANCE_PX = 1

#: Injected before every page's own scripts (Page.addScriptToEvaluateOnNewDocument): records
#: errors so that waiting for the charts can stop early when something already went wrong.
#: The errors reported come from the browser log (SEVERE), not from this list.
INSTRUMENT_JS = r"""
window.__babelErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) {
    window.__babelErrors.push('failed to load ' + (t.src || t.href));
  } else {
    window.__babelErrors.push(String(e.message));
  }
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__babelErrors.push('unhandled rejection: ' + e.reason);
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__babelErrors.push([].map.call(arguments, String).join(' '));
    return original.apply(this, arguments);
  };
})();
"""

#: True when the page is loaded, every chart is drawn (an svg, the PNG fallback removed) and
#: every image has finished loading, or as soon as the page logged an error.
READY_JS = r"""
if (document.readyState !== 'complete') { return false; }
if ((window.__babelErrors || []).length) { return true; }
var charts = Array.from(document.querySelectorAll('.babel-vega'));
var drawn = charts.every(function (d) {
  return d.querySelector('svg') !== null && d.querySelector('.babel-vega-fallback') === null;
});
return drawn && Array.from(document.images).every(function (i) { return i.complete; });
"""

#: Measures the column and every chart, legend, image and table of the page (CSS px,
#: relative to the viewport). Folded tables (<details>) are opened for the measurement and
#: folded again.
MEASURE_JS = r"""
var column = document.querySelector(arguments[0]);
var root = document.documentElement;
function box(el) {
  var r = el.getBoundingClientRect();
  return {left: r.left, right: r.right, width: r.width, height: r.height};
}
function describe(el) {
  var s = el.tagName.toLowerCase();
  if (el.id) { s += '#' + el.id; }
  var cls = (typeof el.className === 'string' ? el.className : '').trim().split(/\s+/).filter(Boolean);
  if (cls.length) { s += '.' + cls.slice(0, 2).join('.'); }
  return s;
}
function section(el) {
  var s = el.closest('section');
  while (s) {
    var h = s.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
    if (h) { return h.textContent.replace(/#\s*$/, '').trim(); }
    s = s.parentElement && s.parentElement.closest('section');
  }
  return '';
}
/* ancestors of el, up to and including the column, that scroll sideways */
function scrollers(el) {
  var out = [];
  for (var p = el.parentElement; p; p = p.parentElement) {
    if (p.scrollWidth > p.clientWidth + 1) {
      out.push({element: describe(p), clientWidth: p.clientWidth, scrollWidth: p.scrollWidth,
                overflowX: getComputedStyle(p).overflowX});
    }
    if (p === column) { break; }
  }
  return out;
}
/* the nearest ancestor (below the column) that the reader can scroll sideways */
function scrollWrapper(el) {
  for (var p = el.parentElement; p && p !== column; p = p.parentElement) {
    var o = getComputedStyle(p).overflowX;
    if (o === 'auto' || o === 'scroll') { return describe(p); }
  }
  return null;
}
if (!column) { return {column: null}; }
var folded = Array.from(column.querySelectorAll('details:not([open])'));
folded.forEach(function (d) { d.open = true; });
var cb = box(column);
var cs = getComputedStyle(column);
var padL = parseFloat(cs.paddingLeft) + parseFloat(cs.borderLeftWidth);
var padR = parseFloat(cs.paddingRight) + parseFloat(cs.borderRightWidth);
var out = {
  title: (document.querySelector('h1') || {textContent: document.title}).textContent.replace(/#\s*$/, '').trim(),
  viewport: {width: root.clientWidth, innerWidth: window.innerWidth},
  page: {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth},
  column: {left: cb.left + padL, right: cb.right - padR, width: cb.width - padL - padR,
           outerLeft: cb.left, outerRight: cb.right, outerWidth: cb.width}
};
out.charts = Array.from(document.querySelectorAll('.babel-vega')).map(function (el, i) {
  var svg = el.querySelector('svg');
  return {
    id: el.id, index: i, section: section(el),
    drawn: svg !== null && el.querySelector('.babel-vega-fallback') === null,
    svg: svg ? box(svg) : null,
    embed: box(el),
    scrollers: scrollers(el),
    legends: Array.from(el.querySelectorAll('g.role-legend')).map(function (g) {
      var t = g.querySelector('.role-legend-title text');
      var labels = Array.from(g.querySelectorAll('.role-legend-label text')).slice(0, 2).map(function (x) {
        return x.textContent;
      });
      return {title: t ? t.textContent : '', labels: labels, box: box(g)};
    })
  };
});
out.images = Array.from(column.querySelectorAll('img')).filter(function (img) {
  return !img.closest('.babel-vega');
}).map(function (img, i) {
  return {index: i, src: img.getAttribute('src') || '', alt: img.getAttribute('alt') || '',
          naturalWidth: img.naturalWidth, complete: img.complete, section: section(img),
          styleWidth: img.style.width || img.getAttribute('width') || '',
          box: box(img), scrollers: scrollers(img)};
});
out.tables = Array.from(column.querySelectorAll('table')).map(function (t, i) {
  var cap = t.querySelector('caption');
  var heads = Array.from(t.querySelectorAll('th')).map(function (h) { return h.textContent.trim(); })
    .filter(Boolean).slice(0, 3);
  return {index: i, caption: cap ? cap.textContent.trim() : '', heads: heads, section: section(t),
          folded: folded.some(function (d) { return d.contains(t); }),
          box: box(t), wrapper: scrollWrapper(t)};
});
folded.forEach(function (d) { d.open = false; });
return out;
"""

#: What a reader sees besides the layout (see :func:`reader_problems`): Markdown left raw in the text
#: (pipe tables), the tables of the Verdict section (a DataFrame index column, text output after them),
#: the Answer box, papermill's injected parameters cell, and the links to the repository.
READER_JS = r"""
var column = document.querySelector(arguments[0]);
var repo = arguments[1];
var out = {rawPipes: [], verdict: null, answer: null, injected: 0, repoLinks: 0};
if (!column) { return out; }
var pipe = /\|\s*:?[-\u2013\u2014]+:?\s*\||^\s*\|[^|\n]+\|[^|\n]+\|/m;  /* '|---|' (or '|—|' after smart quotes) */
Array.from(column.querySelectorAll('p, li, td')).forEach(function (el) {
  if (el.closest('pre, code, .highlight')) { return; }
  var t = el.textContent;
  if (pipe.test(t)) { out.rawPipes.push(t.trim().slice(0, 100)); }
});
var heads = Array.from(column.querySelectorAll('section > h2, section > h1'));
var vh = heads.find(function (h) { return /^Verdicts?\b/.test(h.textContent.trim()); });
if (vh) {
  var sec = vh.parentElement;
  var tables = Array.from(sec.querySelectorAll('table'));
  out.verdict = {
    tables: tables.length,
    indexColumns: tables.filter(function (t) {
      return t.querySelector('tbody th') !== null || t.classList.contains('dataframe') ||
             t.querySelector('th.row_heading, th.blank') !== null;
    }).length,
    plainOutputs: Array.from(sec.querySelectorAll('.cell_output .output.text_plain, .cell_output pre'))
      .map(function (e) { return e.textContent.trim().slice(0, 60); })
  };
}
var box = column.querySelector('.babel-answer');
if (box) {
  var firstMethod = heads.find(function (h) { return h.textContent.trim() !== (heads[0] || {}).textContent; });
  out.answer = {text: box.textContent.trim().slice(0, 120),
                beforeFirstSection: !firstMethod ||
                  !!(box.compareDocumentPosition(firstMethod) & Node.DOCUMENT_POSITION_FOLLOWING)};
}
out.injected = Array.from(column.querySelectorAll('.cell_input')).filter(function (c) {
  return c.offsetParent !== null && /^\s*# Parameters\b/.test(c.textContent);
}).length;
if (repo) {
  out.repoLinks = Array.from(document.querySelectorAll('a[href]')).filter(function (a) {
    return a.getAttribute('href').replace(/\/$/, '') === repo.replace(/\/$/, '');
  }).length;
}
return out;
"""


def reader_problems(page: str, m: dict, *, chapter: bool, repository: str = "") -> list[str]:
    """What is wrong for a reader on one page, from :data:`READER_JS`'s measurement *m*: raw pipe-table
    Markdown in the text; on a chapter (*chapter*), a Verdict section without a table, with a DataFrame
    index column or with text output after it, no Answer box before the first section, papermill's
    injected parameters cell visible; and, when a *repository* is configured, no link to it."""
    bad = [f"{page}: raw Markdown table in the text: {t!r}" for t in m.get("rawPipes", [])]
    if chapter:
        v = m.get("verdict")
        if not v:
            bad.append(f"{page}: no Verdict section")
        else:
            if not v["tables"]:
                bad.append(f"{page}: the Verdict section has no table")
            if v["indexColumns"]:
                bad.append(f"{page}: a verdict table shows a DataFrame index column")
            if v["plainOutputs"]:
                bad.append(f"{page}: text output in the Verdict section: {v['plainOutputs'][:2]}")
        a = m.get("answer")
        if not a:
            bad.append(f"{page}: no Answer box")
        elif not a["beforeFirstSection"]:
            bad.append(f"{page}: the Answer box is not at the top (before the first section)")
        if m.get("injected"):
            bad.append(f"{page}: papermill's injected parameters cell is shown")
    if repository and not m.get("repoLinks"):
        bad.append(f"{page}: no link to the repository {repository}")
    return bad


#: HEAD every download link of the page; [[href, status], ...].
DOWNLOADS_JS = r"""
return Promise.all(Array.from(document.querySelectorAll('.babel-download a')).map(function (a) {
  return fetch(a.href, {method: 'HEAD'}).then(function (r) { return [a.getAttribute('href'), r.status]; },
                                              function (e) { return [a.getAttribute('href'), String(e)]; });
}));
"""


@dataclass
class Row:
    """One line of the layout report."""

    page: str
    element: str
    width: float
    column: float
    status: str  # "ok", "FAILED", or "scrolls" (reported, not a failure)
    detail: str = ""
    section: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"


# ---------------------------------------------------------------------------- what a chart is
_SPEC_RE = re.compile(r'getElementById\("(babel-vega-[0-9a-f]+)"\);\s*var spec = (.*?);\n', re.S)


def _title(spec: dict) -> str:
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    if isinstance(title, list):
        title = " ".join(map(str, title))
    if title:
        return str(title)
    for key in ("vconcat", "hconcat", "concat", "layer"):  # a compound chart: its first titled part
        for part in spec.get(key) or []:
            if isinstance(part, dict) and _title(part) != "untitled":
                return _title(part)
    if isinstance(spec.get("spec"), dict):  # facet / repeat
        return _title(spec["spec"])
    return "untitled"


def _label(spec: dict) -> str:
    """The chart's title, or the title of its first titled panel."""
    top = spec.get("title")
    if top:
        return _title({"title": top})
    inner = _title({k: v for k, v in spec.items() if k != "title"})
    return "untitled" if inner == "untitled" else f"untitled; first panel \"{inner}\""


def chart_labels(page_html: Path, site: Path) -> dict[str, dict]:
    """{chart id: {"title", "file"}} for the charts of a built page: the title from the spec
    embedded in the page, the file the spec was saved as (``results/<chapter>/<name>.vl.json``,
    i.e. the name given to ``plots.show``) found by comparing specs."""
    text = Path(page_html).read_text(encoding="utf-8")
    saved = {}
    results = Path(site) / "results" / Path(page_html).stem
    for path in sorted(results.glob("*.vl.json")) if results.is_dir() else []:
        try:
            saved[json.dumps(json.loads(path.read_text(encoding="utf-8")), sort_keys=True)] = path
        except ValueError:
            continue
    labels = {}
    for uid, raw in _SPEC_RE.findall(text):
        try:
            spec = json.loads(raw)
        except ValueError:
            labels[uid] = {"title": "?", "file": ""}
            continue
        path = saved.get(json.dumps(spec, sort_keys=True))
        labels[uid] = {"title": _label(spec),
                       "file": path.relative_to(site).as_posix() if path else ""}
    return labels


def image_labels(page_html: Path, site: Path) -> dict[str, str]:
    """{img src: results file with the same bytes} for a built page's static images
    (``plots.show(..., image=True)`` writes ``results/<chapter>/<name>.png``)."""
    site = Path(site)
    results = site / "results" / Path(page_html).stem
    by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): p.relative_to(site).as_posix()
               for p in (sorted(results.glob("*.png")) if results.is_dir() else [])}
    labels = {}
    for path in sorted((site / "_images").glob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in by_hash:
            labels[f"_images/{path.name}"] = by_hash[digest]
    return labels


# ---------------------------------------------------------------------------- the checks
def _px(x: float) -> str:
    return f"{x:.0f} px"


def layout_rows(page: str, m: dict, charts: dict | None = None, images: dict | None = None) -> list[Row]:
    """Check one page's measurement (:data:`MEASURE_JS`); one Row per element."""
    charts, images = charts or {}, images or {}
    if not m.get("column"):
        return [Row(page, f"column ({COLUMN_SELECTOR})", 0, 0, "FAILED", "no such element on the page")]
    col = m["column"]
    left, right, cw = col["left"], col["right"], col["width"]
    tol = TOLERANCE_PX
    rows = []

    def rel(b):
        return f"x {b['left'] - left:.0f}..{b['right'] - left:.0f} of the column's 0..{cw:.0f}"

    page_sw, page_cw = m["page"]["scrollWidth"], m["page"]["clientWidth"]
    rows.append(Row(page, f"page (width: its scrollWidth; column: the viewport, {page_cw} px)", page_sw, page_cw,
                    "FAILED" if page_sw > page_cw + tol else "ok",
                    f"the page scrolls sideways ({page_sw} > {page_cw} px)" if page_sw > page_cw + tol else ""))

    n = len(m["charts"])
    for c in m["charts"]:
        info = charts.get(c["id"], {})
        title = info.get("title", "?")
        name = f"chart {c['index'] + 1}/{n} " + (f"({title})" if title.startswith("untitled") else f'"{title}"')
        if info.get("file"):
            name += f" [{info['file']}]"
        if not c["drawn"] or not c["svg"]:
            rows.append(Row(page, name, 0, cw, "FAILED", "not drawn (no svg, or the PNG fallback still shown)",
                            c["section"]))
            continue
        svg, embed = c["svg"], c["embed"]
        problems = []
        if svg["width"] > cw + tol:
            problems.append(f"svg {_px(svg['width'])} wide, {_px(svg['width'] - cw)} more than the column")
        elif svg["right"] > right + tol or svg["left"] < left - tol:
            problems.append(f"svg sticks out of the column ({rel(svg)})")
        for s in c["scrollers"]:
            extra = embed["width"] - svg["width"]
            fits = (f"the svg fits ({_px(svg['width'])}) but vega-embed's actions menu adds {_px(extra)}: "
                    if svg["width"] <= cw + tol and extra > 0 else "")
            problems.append(f"{fits}makes {s['element']} scroll sideways by "
                            f"{_px(s['scrollWidth'] - s['clientWidth'])} ({s['scrollWidth']} px of content "
                            f"in {s['clientWidth']} px)")
        rows.append(Row(page, name, svg["width"], cw, "FAILED" if problems else "ok", "; ".join(problems),
                        c["section"]))
        for k, g in enumerate(c["legends"]):
            b = g["box"]
            label = (f"{name} legend \"{g['title']}\"" if g["title"] else
                     f"{name} legend {k + 1} (untitled: {', '.join(g.get('labels') or [])}...)")
            bad = []
            if b["left"] < left - tol or b["right"] > right + tol:
                bad.append(f"legend outside the column ({rel(b)})")
            if b["right"] > m["viewport"]["width"] + tol or b["left"] < -tol:
                bad.append(f"legend outside the viewport (x {b['left']:.0f}..{b['right']:.0f} of "
                           f"0..{m['viewport']['width']})")
            rows.append(Row(page, label, b["right"] - left, cw, "FAILED" if bad else "ok", "; ".join(bad),
                            c["section"]))

    for img in m["images"]:
        src = img["src"]
        shown = images.get(src) or (src if not src.startswith("data:") else f"data: image ({img['alt'][:40]})")
        name = f"image {img['index'] + 1} [{shown}]"
        b = img["box"]
        bad = []
        if not img["complete"] or not img["naturalWidth"]:
            bad.append("not loaded")
        if b["width"] > cw + tol:
            bad.append(f"rendered {_px(b['width'])} wide, {_px(b['width'] - cw)} more than the column")
        elif b["right"] > right + tol or b["left"] < left - tol:
            bad.append(f"sticks out of the column ({rel(b)})")
        for s in img["scrollers"]:
            bad.append(f"makes {s['element']} scroll sideways ({s['scrollWidth']} px in {s['clientWidth']} px)")
        note = ""
        declared = re.match(r"\s*([\d.]+)px", img["styleWidth"] or "")
        if not bad and declared and float(declared.group(1)) > b["width"] + tol:
            note = f"scaled down by CSS from {declared.group(1)} px"
        rows.append(Row(page, name, b["width"], cw, "FAILED" if bad else "ok", "; ".join(bad) or note,
                        img["section"]))

    for t in m["tables"]:
        what = t["caption"] or " | ".join(t["heads"]) or "no header"
        name = f"table {t['index'] + 1} \"{what[:60]}\"" + (" (folded)" if t["folded"] else "")
        b = t["box"]
        if b["width"] <= cw + tol:
            status, detail = "ok", ""
        elif t["wrapper"]:
            status, detail = "FAILED", (f"{_px(b['width'] - cw)} wider than the column: the reader scrolls it "
                                        f"sideways inside {t['wrapper']}")
        else:
            status, detail = "FAILED", f"{_px(b['width'] - cw)} wider than the column and not in a scrollable wrapper"
        rows.append(Row(page, name, b["width"], cw, status, detail, t["section"]))
    return rows


def format_report(rows: list[Row], header: str = "") -> str:
    """The plain-text layout report: page, element, width, column width, status, detail."""
    lines = [header] if header else []
    lines.append(f"{'page':<24} {'status':<7} {'width':>7} {'column':>7}  element  (section) detail")
    for r in rows:
        where = f" ({r.section})" if r.section else ""
        detail = f"  {r.detail}" if r.detail else ""
        lines.append(f"{r.page:<24} {r.status:<7} {r.width:7.0f} {r.column:7.0f}  {r.element}{where}{detail}")
    failed = sum(r.failed for r in rows)
    scrolls = sum(r.status == "scrolls" for r in rows)
    lines.append(f"\n{len(rows)} elements checked: {failed} failed, {scrolls} wide tables in a scrollable wrapper")
    return "\n".join(lines) + "\n"


def failure_message(rows: list[Row], report_path: Path | None = None) -> str:
    """The assertion message: every failed element, grouped by page."""
    failed = [r for r in rows if r.failed]
    col = sorted({round(r.column) for r in failed})
    lines = [f"{len(failed)} elements do not fit the text column "
             f"({COLUMN_SELECTOR} content box: {', '.join(map(str, col))} px at the test's window):"]
    page = None
    for r in failed:
        if r.page != page:
            page = r.page
            lines.append(f"{page}:")
        where = f" in section \"{r.section}\"" if r.section else ""
        lines.append(f"  {r.element}{where}: {r.detail}")
    lines.append("Fix: narrow the chart (properties(width=...), fewer facet columns, legend below with "
                 "alt.Legend(orient='bottom')); vega-embed adds its actions menu (about 38 px) to the right "
                 "of the svg, so the svg must leave that much room. A wide table: fewer columns, shorter headers, or "
                 "plots.table(..., transpose=True).")
    if report_path:
        lines.append(f"Full report: {report_path}; screenshots beside it.")
    return "\n".join(lines)
