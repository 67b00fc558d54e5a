"""The built book in a real browser: Selenium drives Debian's headless Chromium, network off.

Builds the book once from the executed chapters in book/ into a temporary folder, serves it
at http://127.0.0.1:PORT/babel/ (a sub-path, as GitHub Pages serves a project site) and opens
every page of the toc (intro and chapters) in one browser session at a 1280 x 1000 window.
Each page must load with no console error (SEVERE browser log entry), no request to another
host, no failed request, every chart drawn by vega-embed (an <svg> in each .babel-vega, the
PNG fallback removed), every image loaded and every download link answering. Then the layout:
no chart, legend, image or table wider than the text column or outside it, nor a table the
reader must scroll sideways (see tests/browser_layout.py). Then what a reader sees: no raw
Markdown pipe table, a verdict table without a DataFrame index and nothing after it, an Answer
box at the top of every chapter, papermill's injected cell hidden, and a link to the repository
(the site is built with the Pages workflow's step applied, so a repository is configured).
The search page must find a word of the intro.

Full-page screenshots and a plain-text layout report (layout-report.txt) go to
artifacts/screenshots/.

The driver is Selenium with Debian's chromedriver (packages chromium and chromium-driver,
installed by `make test` when run as root); both are given by path, so Selenium Manager never
runs (and is made to fail loudly if anything calls it). Without them the tests skip. To check
another book folder (e.g. a throwaway chapter), set BABEL_BROWSER_BOOK and BABEL_BROWSER_NOTEBOOKS.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path

import browser_layout as layout
import pytest

from babel_lib.book import runner as book

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("BABEL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BABEL_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1280, 1000)  # the column is narrowest here before the sidebars fold away (676 px)
SUBPATH = "/babel/"
SCREENSHOTS = book.ROOT / "artifacts" / "screenshots"
REPORT = SCREENSHOTS / "layout-report.txt"
#: The repository the site is built for (as the Pages workflow configures it).
REPOSITORY = "https://github.com/babel-book/babel-book"
SEARCH_WORD = "papermill"  # a word of book/intro.md
RENDER_TIMEOUT = 30  # s a page may take to load and draw its charts
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--disable-extensions", "--no-proxy-server",
                  f"--window-size={WINDOW[0]},{WINDOW[1]}",
                  # network off: every host name but 127.0.0.1 fails to resolve
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


# ---------------------------------------------------------------------------- the site
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site only under SUBPATH, as a project site on GitHub Pages is."""

    def translate_path(self, path):
        path = urllib.parse.urlsplit(path).path
        if not path.startswith(SUBPATH):
            return "/nonexistent/" + path
        return super().translate_path("/" + path[len(SUBPATH):])

    def log_message(self, *args):
        pass


def _toc_pages(toc_file: Path) -> list[str]:
    """Every page of a Jupyter Book toc, in order: the root, then every `file:` entry."""
    import yaml

    toc = yaml.safe_load(toc_file.read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))
            for part in entry.get("parts") or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    return [str(Path(p).with_suffix("")) for p in pages]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The book built from the executed copies, served at http://127.0.0.1:PORT/babel/."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found (Debian: apt-get install chromium chromium-driver; "
                    "`make test` does it as root)")
    pytest.importorskip("selenium", reason="selenium (requirements.txt) drives Chromium in this test")
    book_dir = Path(os.environ.get("BABEL_BROWSER_BOOK", book.BOOK_DIR))
    notebooks_dir = Path(os.environ.get("BABEL_BROWSER_NOTEBOOKS", book.NOTEBOOKS_DIR))
    out = tmp_path_factory.mktemp("site")
    from test_publish import _published_config  # the Pages workflow's step: a repository is configured

    config = _published_config(tmp_path_factory.mktemp("config"), repository=REPOSITORY.split("github.com/")[1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(book, "CONFIG", config)
        html = book.build_book(strict=True, book_dir=book_dir, path_output=out, notebooks_dir=notebooks_dir)
    handler = functools.partial(_Handler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"base": f"http://127.0.0.1:{server.server_port}{SUBPATH}",
           "pages": _toc_pages(book_dir / "_toc.yml"), "html": Path(html)}
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def driver(tmp_path_factory, site):
    """One headless Chromium session (Selenium + Debian's chromedriver), offline."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common import selenium_manager

    def no_selenium_manager(*args, **kwargs):
        raise AssertionError("Selenium Manager was called (it may download drivers): give paths instead")

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")
        mp.setenv("no_proxy", ",".join(filter(None, [os.environ.get("no_proxy"), "127.0.0.1", "localhost"])))
        mp.setattr(selenium_manager.SeleniumManager, "binary_paths", no_selenium_manager, raising=False)
        try:
            drv = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=str(log)))
        except Exception as err:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"Chromium did not start through {CHROMEDRIVER}: {err}\n{tail}")
    try:
        drv.set_window_size(*WINDOW)
        drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": layout.INSTRUMENT_JS})
        yield drv
    finally:
        drv.quit()


def _drain(drv):
    drv.get_log("browser")
    drv.get_log("performance")


def _network(drv):
    """(requested URLs, failed requests) from the performance log since the last call."""
    urls, failed, by_id = [], [], {}
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        params = msg.get("params", {})
        if msg["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            by_id[params["requestId"]] = url
            urls.append(url)
        elif msg["method"] == "Network.loadingFailed" and not params.get("canceled"):
            url = by_id.get(params["requestId"], f"request {params['requestId']} (URL not logged)")
            failed.append(f"{url} ({params.get('errorText')})")
    return urls, failed


def _foreign(urls):
    bad = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("data", "blob", "about", "chrome", "chrome-extension", "devtools"):
            continue
        if parts.hostname != "127.0.0.1":
            bad.append(url)
    return bad


def _console_errors(drv):
    return [f"{e.get('source', '')}: {e['message']}" for e in drv.get_log("browser")
            if e["level"] == "SEVERE" and not e["message"].split(" ")[0].endswith("/favicon.ico")]


def _screenshot(drv, path: Path):
    """A full-page PNG (Page.captureScreenshot beyond the viewport)."""
    import base64

    size = drv.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": min(size["width"], 2400), "height": min(size["height"], 16000), "scale": 1}
    data = drv.execute_cdp_cmd("Page.captureScreenshot",
                               {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(data["data"]))


# ---------------------------------------------------------------------------- one visit a page
@pytest.fixture(scope="module")
def visits(site, driver):
    """Every page of the toc loaded once: its errors, requests, measurements and layout rows."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    results, rows = [], []
    start = time.perf_counter()
    for name in site["pages"]:
        _drain(driver)
        t0 = time.perf_counter()
        driver.get(site["base"] + f"{name}.html")
        try:
            WebDriverWait(driver, RENDER_TIMEOUT, poll_frequency=0.1).until(
                lambda d: d.execute_script(layout.READY_JS))
            timed_out = False
        except TimeoutException:
            timed_out = True
        measured = driver.execute_script(layout.MEASURE_JS, layout.COLUMN_SELECTOR)
        downloads = driver.execute_script(layout.DOWNLOADS_JS)
        reader = driver.execute_script(layout.READER_JS, layout.COLUMN_SELECTOR, REPOSITORY)
        urls, failed_requests = _network(driver)
        errors = _console_errors(driver)
        _screenshot(driver, SCREENSHOTS / f"{name}.png")
        page_html = site["html"] / f"{name}.html"
        page_rows = layout.layout_rows(name, measured, layout.chart_labels(page_html, site["html"]),
                                       layout.image_labels(page_html, site["html"]))
        rows += page_rows
        results.append({"name": name, "timed_out": timed_out, "measured": measured, "downloads": downloads,
                        "reader": reader,
                        "urls": urls, "failed_requests": failed_requests, "errors": errors,
                        "seconds": time.perf_counter() - t0})
        print(f"{name}: {len(measured.get('charts', []))} charts, {len(measured.get('images', []))} images, "
              f"{len(measured.get('tables', []))} tables, {len(downloads)} downloads, "
              f"{sum(r.failed for r in page_rows)} layout failures, {time.perf_counter() - t0:.1f} s")
    column = next((r["measured"]["column"] for r in results if r["measured"].get("column")), None)
    header = (f"Layout report: {len(results)} pages at a {WINDOW[0]} x {WINDOW[1]} window "
              f"(Chromium {driver.capabilities.get('browserVersion')}), "
              f"{time.perf_counter() - start:.0f} s.\n"
              f"Column = content box of {layout.COLUMN_SELECTOR}"
              + (f": {column['width']:.0f} px (the article box with its padding: {column['outerWidth']:.0f} px; "
                 f"viewport {results[0]['measured']['viewport']['width']} px)." if column else ".")
              + "\nwidth: the element's rendered width (legends: their right edge from the column's left edge).\n")
    REPORT.write_text(layout.format_report(rows, header), encoding="utf-8")
    return {"pages": results, "rows": rows}


# ---------------------------------------------------------------------------- tests
def test_every_toc_page_visited(site, visits):
    assert [p["name"] for p in visits["pages"]] == site["pages"]
    assert len(site["pages"]) >= 2, site["pages"]


def test_pages_load_offline_without_errors(visits):
    failures = []
    for p in visits["pages"]:
        name = p["name"]
        failures += [f"{name}: console error: {e}" for e in p["errors"]]
        failures += [f"{name}: request to another host: {u}" for u in _foreign(p["urls"])]
        failures += [f"{name}: failed request: {u}" for u in p["failed_requests"]
                     if not u.split(" ")[0].endswith("/favicon.ico")]
        failures += [f"{name}: download link {href} -> {status}" for href, status in p["downloads"] if status != 200]
        broken = [i["src"][:80] for i in p["measured"].get("images", []) if not (i["complete"] and i["naturalWidth"])]
        if broken:
            failures.append(f"{name}: images not loaded: {broken}")
    assert not failures, "\n".join(failures)


def test_charts_render(visits):
    failures = []
    for p in visits["pages"]:
        blank = [c["id"] for c in p["measured"].get("charts", []) if not c["drawn"]]
        if blank or p["timed_out"]:
            failures.append(f"{p['name']}: charts not drawn in {RENDER_TIMEOUT} s: {blank or 'images still loading'}")
    assert not failures, "\n".join(failures)


def test_charts_images_and_tables_fit_the_column(visits):
    """No chart, legend or image wider than the text column or outside it; tables only in a
    scrollable wrapper. The full report, ok rows included, is artifacts/screenshots/layout-report.txt."""
    if any(r.failed for r in visits["rows"]):
        pytest.fail(layout.failure_message(visits["rows"], REPORT), pytrace=False)


def test_what_a_reader_sees(visits):
    """Rendered tables, not raw Markdown; verdict tables without a DataFrame index and nothing after them;
    an Answer box at the top of every chapter; papermill's injected cell hidden; the repository linked."""
    failures = []
    for p in visits["pages"]:
        chapter = bool(re.match(r"^\d\d_", Path(p["name"]).name))
        failures += layout.reader_problems(p["name"], p["reader"], chapter=chapter, repository=REPOSITORY)
    assert not failures, "\n".join(failures)


def test_search_finds_a_word(site, driver):
    from selenium.webdriver.support.ui import WebDriverWait

    _drain(driver)
    driver.get(site["base"] + f"search.html?q={SEARCH_WORD}")
    try:
        WebDriverWait(driver, 30, poll_frequency=0.1).until(
            lambda d: d.execute_script("return document.querySelectorAll('#search-results ul.search li').length > 0"))
        found = True
    except Exception:
        found = False
    urls, _ = _network(driver)
    errors = _console_errors(driver)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _screenshot(driver, SCREENSHOTS / "search.png")
    assert found, f"search page found nothing for {SEARCH_WORD!r}"
    assert not errors, errors
    assert not _foreign(urls), _foreign(urls)


def test_site_has_no_absolute_links(site):
    """The site must work from any sub-path: no root-absolute href/src in the pages."""
    bad = []
    for page in Path(site["html"]).glob("*.html"):
        text = page.read_text(encoding="utf-8")
        for attr in ('href="/', "href='/", 'src="/', "src='/"):
            if attr in text:
                bad.append(f"{page.name}: {attr}")
    assert not bad, bad


def test_layout_rules_on_a_made_up_page():
    """The layout rules themselves (no browser): what fits passes, what sticks out fails."""
    col = {"left": 300, "right": 1072, "width": 772, "outerLeft": 268, "outerRight": 1104, "outerWidth": 836}

    def chart(i, width, embed_extra=38, scroll=None, legend_right=None):
        svg = {"left": 300, "right": 300 + width, "width": width, "height": 300}
        legend = {"left": 300 + width - 100, "right": legend_right or 300 + width - 5, "width": 95, "height": 50}
        return {"id": f"babel-vega-{i}", "index": i, "section": "S", "drawn": True, "svg": svg,
                "embed": {**svg, "width": width + embed_extra, "right": 300 + width + embed_extra},
                "scrollers": [scroll] if scroll else [],
                "legends": [{"title": "family", "labels": [], "box": legend}]}

    m = {"viewport": {"width": 1385, "innerWidth": 1400}, "page": {"scrollWidth": 1385, "clientWidth": 1385},
         "column": col,
         "charts": [chart(0, 700), chart(1, 760, scroll={"element": "div.output", "clientWidth": 772,
                                                           "scrollWidth": 798, "overflowX": "auto"}),
                    chart(2, 900, scroll={"element": "div.output", "clientWidth": 772, "scrollWidth": 938,
                                          "overflowX": "auto"}, legend_right=1195)],
         "images": [{"index": 0, "src": "_images/a.png", "alt": "", "naturalWidth": 1768, "complete": True,
                     "section": "S", "styleWidth": "884px", "scrollers": [],
                     "box": {"left": 300, "right": 1072, "width": 772, "height": 400}}],
         "tables": [{"index": 0, "caption": "", "heads": ["a"], "section": "S", "folded": False,
                     "box": {"left": 300, "right": 1300, "width": 1000, "height": 90}, "wrapper": "div.output"},
                    {"index": 1, "caption": "wide", "heads": [], "section": "S", "folded": True,
                     "box": {"left": 300, "right": 1300, "width": 1000, "height": 90}, "wrapper": None}]}
    labels = {"babel-vega-2": {"title": "Too wide", "file": "results/x/too_wide.vl.json"}}
    rows = layout.layout_rows("xx", m, labels, {"_images/a.png": "results/x/a.png"})
    status = {r.element: r.status for r in rows}
    assert [r.status for r in rows if r.element.startswith("chart 1/")] == ["ok", "ok"]
    assert [r.status for r in rows if r.element.startswith("chart 2/")] == ["FAILED", "ok"]  # only scrolls
    assert [r.status for r in rows if r.element.startswith("chart 3/")] == ["FAILED", "FAILED"]
    assert status["image 1 [results/x/a.png]"] == "ok"
    assert status['table 1 "a"'] == "FAILED" and status['table 2 "wide" (folded)'] == "FAILED"  # no sideways tables
    message = layout.failure_message(rows)
    assert 'chart 3/3 "Too wide" [results/x/too_wide.vl.json]' in message and "900 px" in message
    assert "actions menu adds 38 px" in message


def test_reader_rules_on_a_made_up_page():
    """The reader checks themselves (no browser): the old rendering's defects fail, a good page passes."""
    good = {"rawPipes": [], "verdict": {"tables": 1, "indexColumns": 0, "plainOutputs": []},
            "answer": {"text": "Answer Question. ...", "beforeFirstSection": True}, "injected": 0, "repoLinks": 2}
    assert layout.reader_problems("02_x", good, chapter=True, repository=REPOSITORY) == []
    old = {"rawPipes": ["| Claim (source) | Our result | Evidence | Verdict | |---|---|---|---|"],
           "verdict": {"tables": 1, "indexColumns": 1, "plainOutputs": ["claim source tested"]},
           "answer": None, "injected": 1, "repoLinks": 0}
    problems = "\n".join(layout.reader_problems("02_x", old, chapter=True, repository=REPOSITORY))
    for words in ("raw Markdown table", "DataFrame index", "text output in the Verdict", "no Answer box",
                  "injected parameters", "no link to the repository"):
        assert words in problems, (words, problems)
    assert layout.reader_problems("intro", {**old, "rawPipes": []}, chapter=False) == []
