"""The built book opened in a real headless browser, as a reader sees it.

``python -m cdlib book check-html`` serves ``_build/html`` on a loopback port,
opens every page in headless Chromium (driven by Selenium through Debian's
``chromedriver``), waits until the page's scripts ran (MathJax included) and
fails when a page

- **shows raw TeX**: a math delimiter ``\\(``, ``\\)``, ``\\[``, ``\\]`` or ``$$``
  left in its rendered text, outside code (:func:`raw_tex_snippets`), which is
  what a reader sees where MathJax did not load;
- **has an image that did not load** (``naturalWidth == 0`` once every image
  settled);
- **asks for a network resource**: any request to a host other than the
  loopback server (:func:`network_requests`), read from Chromium's own network
  log, so a script, font or stylesheet from a CDN is caught whether or not the
  machine has internet. Name resolution is switched off in the browser, so the
  check never waits on a network it does not have.

A full-page screenshot of every page goes to ``_build/screenshots/`` for a
human look. Static checks of the HTML files would miss what the scripts do (a
script that loads another from a CDN, MathJax typesetting); a real browser is
what a reader has. Selenium is used rather than raw DevTools calls because it is
the maintained client for exactly this.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlsplit

#: math delimiters that MathJax replaces; one left in a page's text is formula source a reader sees as is
TEX_DELIMITERS = ("\\(", "\\)", "\\[", "\\]", "$$")

#: URL schemes that never leave the machine
LOCAL_SCHEMES = ("data", "blob", "about", "chrome", "chrome-extension", "devtools")

#: the page's text without code cells and outputs (they may hold delimiters legitimately), as JavaScript
_PAGE_TEXT = """
const copy = document.body.cloneNode(true);
copy.querySelectorAll('pre, code, script, style, .highlight, mjx-assistive-mml').forEach(e => e.remove());
return copy.textContent;
"""

#: resolves once every image has loaded or failed and MathJax has typeset the page (when it is there at all)
_SETTLED = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images).map(i => i.complete ? null
    : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); }));
const math = (window.MathJax && MathJax.startup && MathJax.startup.promise) || null;
Promise.all([...images, math]).then(() => done(true), () => done(false));
"""

_BROKEN_IMAGES = "return Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.currentSrc || i.src);"


def raw_tex_snippets(text: str, context: int = 30) -> list[str]:
    """Each math delimiter of :data:`TEX_DELIMITERS` left in ``text``, with ``context`` characters around it.

    Rendered math leaves no delimiter in a page's text (MathJax replaces the whole ``\\(...\\)``), so
    every hit is a formula a reader sees as source.
    """
    pattern = "|".join(re.escape(d) for d in TEX_DELIMITERS)
    return [" ".join(text[max(0, m.start() - context):m.end() + context].split()) for m in re.finditer(pattern, text)]


def network_requests(urls: Iterable[str], local_origin: str) -> list[str]:
    """The URLs of ``urls`` that leave the machine: neither under ``local_origin`` (scheme://host:port of the
    loopback server) nor of a :data:`LOCAL_SCHEMES` scheme; in first-seen order, without repeats."""
    origin = urlsplit(local_origin)
    leaving = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in LOCAL_SCHEMES or (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc):
            continue
        if url not in leaving:
            leaving.append(url)
    return leaving


_REFRESH = re.compile(r"""<meta\s+http-equiv=["']refresh["']\s+content=["']\d+;\s*url=([^"']+)["']""", re.I)


def redirect_target(html: str) -> str | None:
    """Where a page that only redirects (``<meta http-equiv="refresh" content="0; url=...">``, as the book's
    root ``index.html``) sends the reader, or None for a page with content of its own."""
    match = _REFRESH.search(html)
    return match.group(1) if match and "<body" not in html.lower() else None


def requested_urls(performance_log: Iterable[dict]) -> Iterator[str]:
    """The URL of every request in Chromium's performance log (Selenium's ``get_log("performance")``)."""
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            yield message["params"]["request"]["url"]


@dataclass
class PageReport:
    """What the browser found on one page; ``ok`` when it found nothing wrong."""

    page: str
    raw_tex: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)
    missing_redirect: str | None = None  # a redirecting page's target that does not exist
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return not (self.raw_tex or self.broken_images or self.network or self.missing_redirect)

    def problems(self, shown: int = 3) -> list[str]:
        """One line per problem; of the raw TeX, its count and the first ``shown`` places."""
        tex = ([f"raw TeX: {len(self.raw_tex)} math delimiters left in the text, first: "
                + " | ".join(f"...{s}..." for s in self.raw_tex[:shown])] if self.raw_tex else [])
        return (tex + [f"image did not load: {u}" for u in self.broken_images]
                + [f"network request: {u}" for u in self.network]
                + ([f"redirects to a missing page: {self.missing_redirect}"] if self.missing_redirect else []))


def find_browser() -> tuple[str, str] | None:
    """Paths of ``chromium`` and ``chromedriver`` on PATH, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def _serve(root: Path) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _driver(browser: str, chromedriver: str, width: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
                 f"--window-size={width},1000",
                 # no name resolves: a page that asks the network fails at once instead of waiting for it
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    return driver


def _screenshot(driver, path: Path) -> None:
    """The whole page, not only the window, as PNG."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def check_pages(html: Path, pages: Iterable[str] | None = None, screenshots: Path | None = None,
                width: int = 1280) -> list[PageReport]:
    """Open each page of ``html`` (paths relative to it; default: every ``*.html`` but the search and index
    pages Sphinx generates) in headless Chromium and report what it shows (see the module docstring).

    Raises RuntimeError when Chromium or chromedriver is missing (:func:`find_browser`).
    """
    found = find_browser()
    if found is None:
        raise RuntimeError("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    html = Path(html).resolve()
    if pages is None:
        pages = sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                       if p.name not in ("search.html", "genindex.html") and "_static" not in p.parts)
    server = _serve(html)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    driver = _driver(*found, width=width)
    reports = []
    try:
        for page in pages:
            target = redirect_target((html / page).read_text(encoding="utf-8", errors="replace"))
            if target is not None:  # nothing to see: its target is checked as a page of its own
                missing = not (html / page).parent.joinpath(target).is_file()
                reports.append(PageReport(page=page, missing_redirect=target if missing else None))
                continue
            driver.get_log("performance")  # drop what earlier pages logged
            driver.get(f"{origin}/{page}")
            driver.execute_async_script(_SETTLED)
            report = PageReport(page=page, raw_tex=raw_tex_snippets(driver.execute_script(_PAGE_TEXT)),
                                broken_images=driver.execute_script(_BROKEN_IMAGES),
                                network=network_requests(requested_urls(driver.get_log("performance")), origin))
            if screenshots is not None:
                report.screenshot = Path(screenshots) / Path(page).with_suffix(".png")
                _screenshot(driver, report.screenshot)
            reports.append(report)
    finally:
        driver.quit()
        server.shutdown()
    return reports


def cmd_check_html(args: argparse.Namespace) -> int:
    html = Path(args.html)
    if not (html / "index.html").is_file():
        print(f"error: no built book at {html} (run make html first)", file=sys.stderr)
        return 2
    if find_browser() is None:
        message = "skipped: chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"
        print(f"browser check {message}", file=sys.stderr)
        return 1 if args.require else 0
    reports = check_pages(html, screenshots=Path(args.screenshots))
    for report in reports:
        print(f"{'ok  ' if report.ok else 'FAIL'} {report.page}", file=sys.stderr)
        for problem in report.problems():
            print(f"     {problem}", file=sys.stderr)
    failed = sum(not r.ok for r in reports)
    print(f"browser check: {len(reports) - failed} of {len(reports)} pages ok; screenshots in {args.screenshots}",
          file=sys.stderr)
    return 1 if failed else 0
