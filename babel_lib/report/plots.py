"""Altair charts that show in the offline book and stay interactive in JupyterLab.

Use in a chapter::

    from babel_lib.report import plots
    plots.setup("01_moefication")                    # renderer, theme, results folder
    chart = plots.heatmap(df, "expert", "layer", "frequency", facet="language")
    plots.show(chart, "frequency_heatmaps", image=True, table=df)

How charts are rendered (the renderer "babel", enabled by :func:`setup`):

* In the book (the runner sets ``BABEL_RENDER=book``) a chart becomes ``text/html``: a
  ``div`` holding a static PNG fallback and a script that draws the interactive chart with
  vega-embed from ``_static/babel-vega.js`` (one bundle for the whole site, written from
  ``vl_convert.javascript_bundle()`` by the build, nothing from a CDN). Where that bundle is
  missing (GitHub's notebook view, an executed copy opened in JupyterLab) the PNG stays.
* Interactively (JupyterLab) a chart becomes the Vega-Lite JSON mimetype, drawn by
  JupyterLab's built-in vega extension, offline. JupyterLab 4 knows the mimetype only up to
  ``application/vnd.vegalite.v5+json``; Altair 6 writes Vega-Lite 6 specs, which that
  renderer draws (heatmaps, bars, lines and facets are the same in both versions). Altair's
  own default renderer would load vega from a CDN and show nothing offline.
  JupyterLab prefers text/html over the vega mimetype, so the two modes never share a bundle.

Data size: interactive charts carry their data inline (in the notebook and the page), so
:func:`setup` keeps Altair's row limit, raised deliberately to :data:`MAX_ROWS`. Bigger
charts (e.g. 18 layers x 64 experts x 9 languages, or 24 x 2048 neurons) go through
``show(..., image=True)``: a PNG rendered by vl-convert at scale 2, with the full data saved
as CSV beside it (``table=``) for readers to download.

Colours: one sequential scheme for frequencies (:data:`SEQUENTIAL`, viridis) and one
diverging scheme centred on 0 for differences (:data:`DIVERGING`, redblue), set in the
theme and used by :func:`heatmap`.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
import struct
import uuid
from pathlib import Path

import altair as alt

from babel_lib.core import paths
from babel_lib.core.cache import atomic_write_bytes

SEQUENTIAL = "viridis"
DIVERGING = "redblue"
#: Row limit for charts that embed their data (interactive views); use image=True beyond.
MAX_ROWS = 10_000
#: The widest a chart may be drawn, legends included (px): the book's text column is 772 px at a 1400 px window and
#: vega-embed adds its 38 px actions menu to the right of every interactive chart.
MAX_WIDTH = 730
#: The mimetype JupyterLab's built-in vega extension renders (see the module docstring).
VEGALITE_MIME = "application/vnd.vegalite.v5+json"
_VL_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
_EMBED_OPTIONS = {"renderer": "svg", "mode": "vega-lite",
                  "actions": {"export": True, "source": False, "compiled": False, "editor": False}}
_chapter: str | None = None


# ---------------------------------------------------------------------------- setup
def theme() -> dict:
    """The book's Altair theme: font sizes and the two colour schemes."""
    return {
        "config": {
            "title": {"fontSize": 15, "anchor": "start", "offset": 8},
            "axis": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": "normal"},
            "legend": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": "normal"},
            "header": {"labelFontSize": 12, "titleFontSize": 13},
            "range": {
                "heatmap": {"scheme": SEQUENTIAL},
                "ramp": {"scheme": SEQUENTIAL},
                "diverging": {"scheme": DIVERGING},
            },
            "view": {"continuousWidth": 420, "continuousHeight": 280},
        }
    }


def setup(chapter: str | None = None) -> None:
    """Register and enable the "babel" renderer and theme; name the chapter whose results folder
    :func:`show` and :func:`table` write to (``plots.setup("02_heatmaps")``). The runner's
    $BABEL_CHAPTER wins over the argument (the executed copy's results go where the runner looks)."""
    global _chapter
    _chapter = chapter
    alt.renderers.register("babel", render)
    alt.renderers.enable("babel")
    alt.theme.register("babel", enable=True)(theme)
    alt.data_transformers.enable("default", max_rows=MAX_ROWS)


def current_chapter() -> str:
    """The chapter results are written for: $BABEL_CHAPTER (set by the runner), else the name given to
    :func:`setup`, else the notebook JupyterLab reports ($JPY_SESSION_NAME), else 'scratch'."""
    session = os.environ.get("JPY_SESSION_NAME") or ""
    from_session = Path(session).stem if session.endswith(".ipynb") else ""
    return os.environ.get("BABEL_CHAPTER") or _chapter or from_session or "scratch"


# ---------------------------------------------------------------------------- files
def _in_book() -> bool:
    return bool(os.environ.get("BABEL_BOOK_DIR"))


def book_dir() -> Path:
    """The folder results are written under: $BABEL_BOOK_DIR (set by the runner), else
    ``runs/interactive/`` (a notebook run by hand, in JupyterLab or by plain papermill, never writes
    into the committed book)."""
    return Path(os.environ.get("BABEL_BOOK_DIR") or paths.RUNS_DIR / "interactive")


def results_dir(chapter: str | None = None) -> Path:
    """The folder beside a chapter that holds its data and figures (created): in a book run
    ``<$BABEL_BOOK_DIR>/results/<chapter>/``; in a notebook run by hand ``runs/interactive/<chapter>/``
    (one folder a chapter, so chapters never overwrite each other's tables)."""
    name = _safe(chapter or current_chapter())
    path = book_dir() / "results" / name if _in_book() else book_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_table(df, chapter: str | None, name: str) -> Path:
    """Write *df* as ``<results_dir(chapter)>/<name>.csv`` atomically; return the path."""
    path = results_dir(chapter) / f"{_safe(name)}.csv"
    atomic_write_bytes(path, df.to_csv(index=False).encode("utf-8"))
    return path


def download_link(path, label: str | None = None):
    """An HTML link to a file under the book folder, relative so it works in the built
    site (which serves results/) and in JupyterLab next to the executed copy."""
    from IPython.display import HTML

    path = Path(path)
    if _in_book():  # relative to the book folder: the built site serves results/ beside the pages
        href = path.resolve().relative_to(book_dir().resolve()).as_posix()
    else:  # relative to the notebook (JupyterLab's kernel runs in the notebook's folder)
        href = Path(os.path.relpath(path.resolve(), Path.cwd().resolve())).as_posix()
    size = path.stat().st_size
    text = html.escape(label or path.name)
    return HTML(f'<p class="babel-download">Download: <a href="{html.escape(href)}" download>'
                f"{text}</a> ({_human(size)})</p>")


# ---------------------------------------------------------------------------- charts
def heatmap(df, x: str, y: str, color: str, facet: str | None = None, columns: int = 3,
            diverging: bool = False, title: str | None = None, tooltip=None,
            width: int | None = None, height: int | None = None, x_title: str | None = None,
            y_title: str | None = None, color_title: str | None = None) -> alt.Chart:
    """A heatmap of a tidy DataFrame: one rect per (x, y), coloured by *color*.

    x and y default to ordinal, color to quantitative, facet to nominal (append ':Q' etc.
    to override). diverging=True uses the diverging scheme centred on 0 (differences);
    otherwise the sequential scheme (frequencies). With *facet*, one panel per value (its
    name as the panel title), *columns* a row. Axis and legend titles: the given words, else
    the field name with underscores as spaces.
    """
    xf, yf, cf = _typed(x, "O"), _typed(y, "O"), _typed(color, "Q")
    nx, ny = df[_field(x)].nunique(), df[_field(y)].nunique()
    scale = (alt.Scale(scheme=DIVERGING, domainMid=0) if diverging else alt.Scale(scheme=SEQUENTIAL))
    if tooltip is None:
        tooltip = [xf, yf, alt.Tooltip(cf, format=".4g")] + ([_typed(facet, "N")] if facet else [])
    panel_w = width or min(12 * nx, 560 if facet is None else 240)
    panel_h = height or min(14 * ny, 360 if facet is None else 180)
    chart = alt.Chart(df).mark_rect().encode(
        x=alt.X(xf, axis=_axis(df[_field(x)], nx, panel_w), title=x_title or _words(x)),
        y=alt.Y(yf, axis=_axis(df[_field(y)], ny, panel_h), title=y_title or _words(y)),
        color=alt.Color(cf, scale=scale, title=color_title or _words(color)),
        tooltip=tooltip,
    )
    chart = chart.properties(width=max(panel_w, 60), height=max(panel_h, 40))
    if facet:
        chart = chart.facet(facet=alt.Facet(_typed(facet, "N"), title=None), columns=columns)
    if title:
        chart = chart.properties(title=title)
    return chart


def depth_curves(by_layer, title: str, order=None, columns: int = 2, width: int = 300,
                 height: int = 170) -> alt.FacetChart:
    """Per-layer statistics of several models at relative depth, one panel a statistic (independent y
    scales): each model's value per layer as a line with points and its 95% interval as a band, and a
    dashed line where ``by_layer`` has a ``floor`` column (a noise floor). ``by_layer``: tidy rows with
    model, statistic, layer, relative_depth (layer + 0.5) / layers, value, low, high; ``order``: the
    statistics' panel order."""
    base = alt.Chart().encode(x=alt.X("relative_depth:Q", title="Relative depth", scale=alt.Scale(domain=[0, 1])),
                              color=alt.Color("model:N", title="Model", legend=alt.Legend(orient="bottom")))
    tooltip = ["model:N", "statistic:N", "layer:O"] + [alt.Tooltip(f"{c}:Q", format=".4f") for c in ("value", "low", "high")]
    layers = [base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q", title=None, scale=alt.Scale(zero=False)), y2="high:Q"),
              base.mark_line(point=alt.OverlayMarkDef(size=16)).encode(y="value:Q", tooltip=tooltip)]
    if "floor" in by_layer.columns:
        layers.append(base.mark_line(strokeDash=[4, 3]).encode(y="floor:Q"))
    panel = alt.layer(*layers, data=by_layer).properties(width=width, height=height)
    sort = list(order) if order is not None else list(dict.fromkeys(by_layer["statistic"]))
    return panel.facet(facet=alt.Facet("statistic:N", title=None, sort=sort), columns=columns
                       ).resolve_scale(y="independent").properties(title=title)


def interval_chart(df, value: str, category: str, *, low: str = "low", high: str = "high",
                   value_title: str | None = None, category_title: str | None = None, horizontal: bool = True,
                   color: str | None = None, color_title: str | None = None, offset: bool = False,
                   reference=None, reference_colour: str = "#d62728", sort=None, zero: bool = False,
                   width: int = 560, height: int | None = None, title: str | None = None, tooltip=None,
                   digits: int = 4, size: int = 60) -> alt.Chart:
    """Estimates with their intervals: one point per row at ``value`` and a rule from ``low`` to ``high``.

    df: one row per estimate. category: the other axis (nominal unless typed, e.g. "layer:O").
    horizontal=True draws the values along x (categories down the y axis, ``height`` 22 px a category
    unless given); False draws them up the y axis. color: a column that colours points and rules
    (``offset=True`` sets same-category points side by side, vertical charts only). reference: a number
    (a dashed rule across the chart: a null or a noise floor) or a column (a tick on each row). sort: the
    categories' order (a list, "-x"/"x"/"-y"/"y", or None for the data's order)."""
    v, lo, hi = _typed(value, "Q"), _typed(low, "Q"), _typed(high, "Q")
    cat = _typed(category, "N")
    along, across = ("x", "y") if horizontal else ("y", "x")
    cat_sort = sort if sort is not None else list(dict.fromkeys(df[_field(category)]))
    fmt = f".{digits}f"
    tips = tooltip if tooltip is not None else [cat] + [alt.Tooltip(c, format=fmt) for c in (v, lo, hi)]
    enc = {across: getattr(alt, across.upper())(cat, sort=cat_sort, title=category_title,
                                                axis=alt.Axis(labelAngle=0) if across == "x" else alt.Axis())}
    if color is not None:
        enc["color"] = alt.Color(_typed(color, "N"), title=color_title or _words(color),
                                 legend=alt.Legend(orient="bottom", labelLimit=400))
        tips = [_typed(color, "N")] + list(tips)
        if offset and not horizontal:
            enc["xOffset"] = alt.XOffset(_typed(color, "N"))
    base = alt.Chart(df).encode(**enc)
    axis = getattr(alt, along.upper())
    rules = base.mark_rule(strokeWidth=2).encode(**{along: axis(lo, title=value_title or _words(value),
                                                                scale=alt.Scale(zero=zero)), f"{along}2": hi})
    points = base.mark_point(filled=True, size=size).encode(**{along: axis(v)}, tooltip=tips)
    layers = [rules, points]
    if isinstance(reference, str):
        layers.append(base.mark_tick(color=reference_colour, thickness=2, size=14).encode(
            **{along: axis(_typed(reference, "Q"))}))
    elif reference is not None:
        layers.append(alt.Chart(_frame({"reference": [float(reference)]})).mark_rule(
            color=reference_colour, strokeDash=[4, 3]).encode(**{along: axis("reference:Q")}))
    n = df[_field(category)].nunique()
    size_px = height if height is not None else (max(80, 22 * n) if horizontal else 260)
    chart = alt.layer(*layers).properties(width=width, height=size_px)
    return chart.properties(title=title) if title else chart


def layer_bands(df, value: str, *, low: str = "low", high: str = "high", x: str = "layer:O", x_title: str = "Layer",
                y_title: str | None = None, color: str | None = None, color_title: str | None = None,
                colour: str | None = None, significant: str | None = None, reference=None, zero: bool = False,
                width: int = 560, height: int = 220, title: str | None = None, digits: int = 4,
                tooltip=None) -> alt.Chart:
    """A per-layer statistic as a line with points over its 95% interval band.

    df: one row per layer (and per ``color`` group: several lines, one colour each); ``colour``: one fixed
    colour for band, line and points (a single line; e.g. "#2ca02c"). significant: a
    boolean column (or a column of q-values, significant below 0.05): points filled where true, hollow
    where not. reference: a number (a dashed grey rule: a null) or a column (a dashed grey line per
    layer: a noise floor)."""
    v, lo, hi, xf = _typed(value, "Q"), _typed(low, "Q"), _typed(high, "Q"), _typed(x, "O")
    enc = {"x": alt.X(xf, title=x_title, axis=alt.Axis(labelAngle=0) if xf.endswith(":O") else alt.Axis())}
    tips = tooltip if tooltip is not None else [xf] + [alt.Tooltip(c, format=f".{digits}f") for c in (v, lo, hi)]
    if color is not None:
        enc["color"] = alt.Color(_typed(color, "N"), title=color_title or _words(color),
                                 legend=alt.Legend(orient="bottom", labelLimit=400))
        tips = [_typed(color, "N")] + list(tips)
    base = alt.Chart(df).encode(**enc)
    fixed = {"color": colour} if colour else {}
    band = base.mark_area(opacity=0.25, **fixed).encode(y=alt.Y(lo, title=y_title or _words(value),
                                                                scale=alt.Scale(zero=zero)), y2=hi)
    line = base.mark_line(**fixed).encode(y=v)
    point_enc = {"y": v, "tooltip": tips}
    if significant is not None:
        field = _field(significant)
        test = f"datum['{field}'] < 0.05" if df[field].dtype.kind == "f" else f"datum['{field}']"
        point_enc["fill"] = alt.condition(test, alt.value(colour or "#4c78a8") if color is None
                                          else _typed(color, "N"), alt.value("white"))
    points = base.mark_point(size=40, filled=significant is None, **fixed).encode(**point_enc)
    layers = [band, line, points]
    if isinstance(reference, str):
        layers.append(base.mark_line(strokeDash=[4, 4], color="#888").encode(y=_typed(reference, "Q")))
    elif reference is not None:
        layers.append(alt.Chart(_frame({"reference": [float(reference)]})).mark_rule(
            strokeDash=[4, 4], color="#888").encode(y="reference:Q"))
    chart = alt.layer(*layers).properties(width=width, height=height)
    return chart.properties(title=title) if title else chart


def _frame(columns: dict):
    """A small DataFrame (pandas imported on use)."""
    import pandas as pd

    return pd.DataFrame(columns)


def show(chart, name: str, *, image: bool = False, table=None):
    """Display *chart* and keep a copy in the chapter's results folder.

    image=False: interactive (see the module docstring); writes ``<name>.vl.json``.
    image=True: a PNG rendered by vl-convert at scale 2, shown at natural size; writes
    ``<name>.png`` (any number of rows). table: a DataFrame saved as ``<name>.csv`` with a
    download link under the chart. Returns None (the files are in :func:`results_dir`).
    """
    from IPython.display import Image, display

    name = _safe(name)
    folder = results_dir()
    if image:
        with alt.data_transformers.enable("default", max_rows=None):
            spec = chart.to_dict()
        png = _png(spec, scale=2)
        _check_width(name, _png_width(png) // 2)
        path = folder / f"{name}.png"
        atomic_write_bytes(path, png)
        display(Image(data=png, width=_png_width(png) // 2))
    else:
        try:
            spec = chart.to_dict()
        except alt.MaxRowsError as err:
            raise ValueError(f"chart {name!r} has more than {MAX_ROWS} rows: aggregate it, or "
                             "use show(..., image=True) and save the data with table=") from err
        _check_width(name, _png_width(_png(spec, scale=1)))
        path = folder / f"{name}.vl.json"
        atomic_write_bytes(path, json.dumps(spec, indent=1).encode("utf-8"))
        display(render(spec), raw=True)
    if table is not None:
        display(download_link(save_table(table, current_chapter(), name), f"{name}.csv (full data)"))


def render(spec: dict, **metadata) -> dict:
    """The "babel" Altair renderer: a mimebundle for the book or for JupyterLab."""
    text = f"<Altair chart: {spec.get('title', '') or 'untitled'}>"
    if os.environ.get("BABEL_RENDER") == "book":
        return {"text/html": _book_html(spec), "text/plain": text}
    return {VEGALITE_MIME: spec, "text/plain": text}


def _book_html(spec: dict) -> str:
    """A div with a PNG fallback and a script that draws the chart with the site's bundle."""
    uid = f"babel-vega-{uuid.uuid4().hex[:12]}"
    png = base64.b64encode(_png(spec, scale=1)).decode("ascii")
    data = json.dumps(spec).replace("</", "<\\/")
    options = json.dumps(_EMBED_OPTIONS)
    return f"""<div id="{uid}" class="babel-vega"><img class="babel-vega-fallback" alt="chart" src="data:image/png;base64,{png}"></div>
<script type="text/javascript">
(function () {{
  var el = document.getElementById("{uid}");
  var spec = {data};
  function draw() {{
    window.babelVega.vegaEmbed(el, spec, {options}).then(function () {{
      var img = el.querySelector(".babel-vega-fallback");
      if (img) {{ img.remove(); }}
    }}).catch(function (err) {{ console.error("chart {uid}:", err); }});
  }}
  if (window.babelVega) {{ draw(); return; }}
  if (!window.babelVegaLoading) {{
    window.babelVegaLoading = new Promise(function (resolve, reject) {{
      var s = document.createElement("script");
      s.src = (document.documentElement.dataset.content_root || "") + "_static/babel-vega.js";
      s.onload = resolve;
      s.onerror = reject;
      document.head.appendChild(s);
    }});
  }}
  window.babelVegaLoading.then(draw, function () {{ /* no bundle here: keep the PNG */ }});
}})();
</script>"""


def _png_width(png: bytes) -> int:
    return struct.unpack(">I", png[16:20])[0]


def _check_width(name: str, width: int) -> None:
    """Refuse a chart wider than the text column (it would scroll sideways, its legend off-screen)."""
    if width > MAX_WIDTH:
        raise ValueError(f"chart {name!r} is {width} px wide, more than the {MAX_WIDTH} px the book's column "
                         "holds: make it narrower (properties(width=...), fewer facet columns) or put its legend "
                         "below it (alt.Legend(orient='bottom'))")


# ---------------------------------------------------------------------------- tables and prose
def md(text: str):
    """Display Markdown (generated prose: findings, captions)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


#: Column names that hold p-values (shown as '< 0.001' below 0.001).
P_COLUMN = re.compile(r"(^|_)(p|pvalue|p_value|p_raw|p_adjusted|p_holm|p_bh|holm|bh|fdr|q_value)($|_)", re.IGNORECASE)
#: Tables with more columns than this and at most :data:`TRANSPOSE_ROWS` rows are shown transposed
#: (one row per column), so that they fit the text column.
TRANSPOSE_COLUMNS = 6
TRANSPOSE_ROWS = 6


def p_format(p) -> str:
    """A p-value for a table: '< 0.001' (with a no-break space) below 0.001, else 3 significant digits;
    '–' when missing."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        return str(p)
    if p != p:
        return "–"
    return "<\u00a00.001" if p < 0.001 else f"{p:.3g}"  # a no-break space: never split over two lines


def number_format(x) -> str:
    """A float for a table: thousands separators from 1,000, else 3 significant digits, never '1e+03';
    tiny values as '< 0.001'-style scientific only below 1e-4."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if x != x:
        return "–"
    if x in (float("inf"), float("-inf")):
        return "∞" if x > 0 else "−∞"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x != 0 and abs(x) < 1e-4:
        return f"{x:.1e}"
    return f"{x:.3g}"


def yes_no(value) -> str:
    """A boolean for a table, in words."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return "yes" if bool(value) else "no"


def _default_format(series, name: str = ""):
    import pandas as pd

    values = series.dropna()
    if pd.api.types.is_bool_dtype(series) or (len(values) and values.map(lambda v: isinstance(v, bool)).all()):
        return yes_no
    if pd.api.types.is_integer_dtype(series):
        return "{:,}"
    if pd.api.types.is_float_dtype(series):
        return p_format if P_COLUMN.search(str(name)) else number_format
    return None


def _cell(value, fmt) -> str:
    if fmt is None:
        if value is None or (isinstance(value, float) and value != value):
            return "–"
        return yes_no(value) if isinstance(value, bool) else str(value)
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    try:
        return fmt(value) if callable(fmt) else fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def table_html(df, *, columns: dict | None = None, formats: dict | None = None, caption: str | None = None,
               transpose="auto") -> str:
    """``df`` as an HTML table that fits the book's column: only ``columns`` (a {column: header} dict, in
    that order; default all, snake_case turned into words), numbers formatted (``formats`` {column: format
    string or function}; default: thousands separators for integers, 3 significant digits for floats,
    p-value columns as '< 0.001', booleans as 'yes'/'no'), no index. ``transpose``: True, False or "auto"
    (more than :data:`TRANSPOSE_COLUMNS` columns and at most :data:`TRANSPOSE_ROWS` rows: one row per
    column, the first column's values as headers)."""
    import pandas as pd

    shown = df[list(columns)] if columns else df
    headers = columns or {c: str(c).replace("_", " ") for c in shown.columns}
    fmt = {c: (formats or {}).get(c, _default_format(shown[c], c)) for c in shown.columns}
    for c in shown.columns:  # p-values always as '< 0.001' (a format string would show 0.0000 or 9.4e-78)
        if P_COLUMN.search(str(c)) and not callable(fmt[c]) and pd.api.types.is_numeric_dtype(shown[c]):
            fmt[c] = p_format
    cells = [[_cell(v, fmt[c]) for c, v in zip(shown.columns, row)] for row in shown.itertuples(index=False)]
    heads = [headers[c] for c in shown.columns]
    numeric = [fmt[c] is not None and fmt[c] is not yes_no for c in shown.columns]
    if transpose == "auto":
        transpose = len(heads) > TRANSPOSE_COLUMNS and 0 < len(cells) <= TRANSPOSE_ROWS
    e = html.escape
    cap = f"<caption>{e(caption)}</caption>" if caption else ""
    if transpose:
        top = "<tr><th></th>" + "".join(f'<th class="babel-num">{e(r[0])}</th>' for r in cells) + "</tr>"
        body = "".join(f'<tr><th scope="row">{e(h)}</th>'
                       + "".join(f'<td class="babel-num{"" if numeric[i] else " babel-text"}">{e(r[i])}</td>'
                                 for r in cells) + "</tr>"
                       for i, h in enumerate(heads) if i > 0)
        return (f'<table class="babel-table babel-transposed">{cap}<thead>{top}</thead>'
                f"<tbody>{body}</tbody></table>")
    cls = [' class="babel-num"' if n else "" for n in numeric]
    top = "<tr>" + "".join(f"<th{c}>{e(h)}</th>" for h, c in zip(heads, cls)) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td{c}>{e(v)}</td>" for v, c in zip(r, cls)) + "</tr>" for r in cells)
    return f'<table class="babel-table">{cap}<thead>{top}</thead><tbody>{body}</tbody></table>'


def table(df, name: str | None = None, *, columns: dict | None = None, formats: dict | None = None,
          max_rows: int = 15, caption: str | None = None, transpose="auto"):
    """Display ``df`` as a readable table (:func:`table_html`: chosen columns with readable headers,
    numbers formatted, p-values as '< 0.001', booleans in words, no index, wide short tables transposed).
    ``name`` also saves the full table as ``<results_dir()>/<name>.csv`` with a download link; tables
    longer than ``max_rows`` are folded (click to show)."""
    from IPython.display import HTML, display

    if name is not None:
        path = save_table(df, None, name)
    body = table_html(df, columns=columns, formats=formats, caption=caption, transpose=transpose)
    if len(df) > max_rows:
        body = (f'<details class="babel-table"><summary>{html.escape(caption or "Table")}: {len(df):,} rows '
                f"(click to show)</summary>{body}</details>")
    display(HTML(body))
    if name is not None:
        display(download_link(path, f"{name}.csv"))


def show_byte_fallback(fallback) -> None:
    """Display the languages that :meth:`babel_lib.experts.pipeline.Study.byte_fallback_table` flags, with their
    raw-byte share, or one sentence when there are none."""
    flagged = fallback[fallback["byte_fallback"]]
    if flagged.empty:
        md(f"None of the {len(fallback)} languages is written mainly in raw-byte tokens under this tokenizer "
           f"(highest share {fallback['byte_share'].max():.2f}): the analysis below repeats the chapter's.")
        return
    table(flagged, "byte_fallback_languages",
          columns={"name": "Language", "script": "Script", "tokens": "Tokens", "byte_tokens": "Raw-byte tokens",
                   "byte_share": "Share"},
          formats={"byte_share": "{:.2f}"}, transpose=False,
          caption=f"{len(flagged)} of {len(fallback)} languages written mainly in raw-byte tokens "
                  f"(next highest share: {fallback.loc[~fallback['byte_fallback'], 'byte_share'].max():.2f})")


# ---------------------------------------------------------------------------- helpers
def _png(spec: dict, scale: float) -> bytes:
    import vl_convert

    return vl_convert.vegalite_to_png(spec, vl_version=_VL_VERSION, scale=scale)


def _safe(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._")
    if not safe:
        raise ValueError(f"not a usable file name: {name!r}")
    return safe


def _field(shorthand: str) -> str:
    return shorthand.split(":")[0]


def _typed(shorthand: str, default_type: str) -> str:
    return shorthand if ":" in shorthand else f"{shorthand}:{default_type}"


def _axis(values, n: int, length: int = 400) -> alt.Axis:
    """Label every k-th category so that labels are at least about 24 px apart (64 experts, 2048 neurons)."""
    room = max(1, length // 24)
    if n <= room:
        return alt.Axis(labelAngle=0)
    step = -(-n // room)
    return alt.Axis(values=sorted(values.unique().tolist())[::step], labelAngle=0)


def _words(shorthand: str) -> str:
    """A field name as words for an axis title: 'tokens_per_character:Q' -> 'tokens per character'."""
    return _field(shorthand).replace("_", " ")


def _human(size: int) -> str:
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
