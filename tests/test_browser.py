"""The built book in a real browser: headless Chromium, network off, served from a sub-path.

Builds the book from the executed chapters in book/ into a temporary folder, serves it at
http://127.0.0.1:PORT/babel/ and opens every page of the toc and the search page through
the Chrome DevTools protocol (websocket-client). Each page must load with no console error,
no request to another host, every chart drawn (an <svg> or <canvas> inside each
.babel-vega container), every image loaded and every download link answering; the search
page must find a word of the intro. Screenshots go to artifacts/screenshots/.

Chromium comes from Debian (`make test` installs `chromium` when run as root); without it
the test skips. To check another book folder (e.g. a throwaway chapter), set
BABEL_BROWSER_BOOK and BABEL_BROWSER_NOTEBOOKS.
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from babel_lib import book

pytestmark = pytest.mark.browser

SUBPATH = "/babel/"
SCREENSHOTS = book.ROOT / "artifacts" / "screenshots"
SEARCH_WORD = "papermill"  # a word of book/intro.md
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900",
                  # network off: every host name but 127.0.0.1 fails to resolve
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


# ---------------------------------------------------------------------------- a tiny CDP client
class Page:
    """One browser tab driven over the DevTools protocol; collects console errors and requests."""

    def __init__(self, ws_url):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def send(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def pump(self, seconds):
        """Read events for *seconds*."""
        end = time.time() + seconds
        self.ws.settimeout(0.2)
        try:
            while time.time() < end:
                try:
                    msg = json.loads(self.ws.recv())
                except Exception:  # timeout: nothing arrived
                    continue
                if "method" in msg:
                    self.events.append(msg)
        finally:
            self.ws.settimeout(60)

    def goto(self, url, timeout=60):
        self.events.clear()
        self.send("Page.navigate", url=url)
        end = time.time() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            if time.time() > end:
                raise TimeoutError(f"{url} did not load in {timeout}s")
            self.pump(0.2)

    def js(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            if self.js(expression):
                return True
            self.pump(0.3)
        return False

    def console_errors(self):
        errors = []
        for e in self.events:
            p = e["params"]
            if e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif e["method"] == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("exception", {}).get("description")
                              or p["exceptionDetails"].get("text"))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                if p["entry"].get("url", "").endswith("/favicon.ico"):
                    continue  # the browser's own request at the server root, not the page's
                errors.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return errors

    def requested_urls(self):
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, path):
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": min(size["width"], 1600),
                "height": min(size["height"], 12000), "scale": 1}
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        Path(path).write_bytes(base64.b64decode(data["data"]))

    def close(self):
        self.ws.close()


# ---------------------------------------------------------------------------- fixtures
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site only under SUBPATH, as a project site on GitHub Pages is."""

    def translate_path(self, path):
        path = urllib.parse.urlsplit(path).path
        if not path.startswith(SUBPATH):
            return "/nonexistent/" + path
        return super().translate_path("/" + path[len(SUBPATH):])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The book built from the executed copies, served at http://127.0.0.1:PORT/babel/."""
    if find_chromium() is None:
        pytest.skip("Chromium not found (Debian: apt-get install chromium; `make test` does it as root)")
    pytest.importorskip("websocket", reason="websocket-client is needed to drive Chromium")
    book_dir = Path(os.environ.get("BABEL_BROWSER_BOOK", book.BOOK_DIR))
    notebooks_dir = Path(os.environ.get("BABEL_BROWSER_NOTEBOOKS", book.NOTEBOOKS_DIR))
    out = tmp_path_factory.mktemp("site")
    html = book.build_book(strict=True, book_dir=book_dir, path_output=out, notebooks_dir=notebooks_dir)
    handler = functools.partial(_Handler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pages = ["intro"] + [p.stem for p in book.chapters(notebooks_dir)]
    yield {"base": f"http://127.0.0.1:{server.server_port}{SUBPATH}", "pages": pages, "html": html}
    server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory, site):
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.time() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.time() > end:
                pytest.fail(f"Chromium did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
            targets = [t for t in json.load(r) if t["type"] == "page"]
        page = Page(targets[0]["webSocketDebuggerUrl"])
        yield page
        page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _foreign(urls):
    bad = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("data", "blob", "about", "chrome", "chrome-extension"):
            continue
        if parts.hostname != "127.0.0.1":
            bad.append(url)
    return bad


# ---------------------------------------------------------------------------- tests
def test_pages_render_offline(site, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    failures = []
    for name in site["pages"]:
        browser.goto(site["base"] + f"{name}.html")
        charts_ok = browser.wait_for(
            "[...document.querySelectorAll('.babel-vega')]"
            ".every(d => d.querySelector('svg, canvas') !== null)", timeout=60)
        images_ok = browser.wait_for(
            "[...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=30)
        links = browser.js(
            "Promise.all([...document.querySelectorAll('.babel-download a')].map("
            "a => fetch(a.href, {method: 'HEAD'}).then(r => [a.getAttribute('href'), r.status])))")
        browser.pump(1.0)  # late console messages
        counts = browser.js("({charts: document.querySelectorAll('.babel-vega').length,"
                            " images: document.images.length})")
        browser.screenshot(SCREENSHOTS / f"{name}.png")
        if not charts_ok:
            blank = browser.js("[...document.querySelectorAll('.babel-vega')]"
                               ".filter(d => !d.querySelector('svg, canvas')).map(d => d.id)")
            failures.append(f"{name}: charts not drawn: {blank}")
        if not images_ok:
            broken = browser.js("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                                ".map(i => i.src.slice(0, 80))")
            failures.append(f"{name}: images not loaded: {broken}")
        failures += [f"{name}: download link {href} -> HTTP {status}" for href, status in links if status != 200]
        failures += [f"{name}: console error: {e}" for e in browser.console_errors()]
        failures += [f"{name}: request to another host: {u}" for u in _foreign(browser.requested_urls())]
        print(f"{name}: {counts['charts']} charts, {counts['images']} images, {len(links)} downloads")
    assert not failures, "\n".join(failures)


def test_search_finds_a_word(site, browser):
    browser.goto(site["base"] + f"search.html?q={SEARCH_WORD}")
    found = browser.wait_for("document.querySelectorAll('#search-results ul.search li').length > 0",
                             timeout=30)
    browser.screenshot(SCREENSHOTS / "search.png")
    assert found, f"search page found nothing for {SEARCH_WORD!r}"
    assert not browser.console_errors()
    assert not _foreign(browser.requested_urls())


def test_site_has_no_absolute_links(site):
    """The site must work from any sub-path: no root-absolute href/src in the pages."""
    bad = []
    for page in Path(site["html"]).glob("*.html"):
        text = page.read_text(encoding="utf-8")
        for attr in ('href="/', "href='/", 'src="/', "src='/"):
            if attr in text:
                bad.append(f"{page.name}: {attr}")
    assert not bad, bad
