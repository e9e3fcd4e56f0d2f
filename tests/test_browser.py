"""The browser check (cdlib.book.browser): its pure parts, and real Chromium on small pages that show each defect."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from cdlib.book import browser

#: a 1x1 PNG
PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                      "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def test_raw_tex_snippets_finds_every_delimiter_and_nothing_in_plain_text():
    text = r"The loss \(\mathcal{L} = a\) and $$b$$ then \[c\] end."
    snippets = browser.raw_tex_snippets(text, context=3)
    assert len(snippets) == 6  # \( \) $$ $$ \[ \]
    assert snippets[0] == r"ss \(\ma"
    assert browser.raw_tex_snippets("a price of 5 $ and (parentheses) [brackets] \\ backslash") == []


def test_network_requests_keeps_only_what_leaves_the_machine():
    urls = ["http://127.0.0.1:8000/index.html", "http://127.0.0.1:8000/_static/a.js", "data:image/png;base64,xx",
            "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js", "http://127.0.0.1:9999/other-port.js",
            "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js", "blob:http://127.0.0.1:8000/x"]
    assert browser.network_requests(urls, "http://127.0.0.1:8000") == [
        "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js", "http://127.0.0.1:9999/other-port.js"]


def test_redirect_target_reads_a_meta_refresh_page_only():
    assert browser.redirect_target('<meta http-equiv="Refresh" content="0; url=book/index.html" />') == "book/index.html"
    assert browser.redirect_target("<html><head><meta http-equiv='refresh' content='5; url=x.html'></head>"
                                   "<body>text</body></html>") is None
    assert browser.redirect_target("<p>no redirect</p>") is None


def test_requested_urls_reads_chromiums_performance_log():
    def entry(method, **params):
        return {"message": json.dumps({"message": {"method": method, "params": params}})}

    log = [entry("Network.requestWillBeSent", request={"url": "https://a.example/x.js"}),
           entry("Network.responseReceived", response={"url": "https://b.example/y.js"}),
           entry("Network.requestWillBeSent", request={"url": "http://127.0.0.1:1/z.css"})]
    assert list(browser.requested_urls(log)) == ["https://a.example/x.js", "http://127.0.0.1:1/z.css"]


def _page(body: str, head: str = "") -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'>{head}</head><body>{body}</body></html>"


@pytest.mark.skipif(browser.find_browser() is None, reason="chromium and chromedriver are not installed")
def test_chromium_flags_raw_tex_broken_images_and_network_requests_and_passes_rendered_math(tmp_path):
    (tmp_path / "pixel.png").write_bytes(PIXEL)
    mathjax = Path(importlib.util.find_spec("sphinx-mathjax-offline").origin).parent / "static" / "mathjax"
    shutil.copytree(mathjax, tmp_path / "mathjax")
    math_head = "<script defer src='mathjax/tex-chtml.js'></script>"
    pages = {
        "clean.html": _page("<p>text</p><img src='pixel.png'><pre>$$ in code is fine \\(</pre>"),
        "rendered.html": _page(r"<p>inline \(x^2\) and display</p><div>\[\sum_i a_i\]</div>", math_head),
        "raw.html": _page(r"<p>the loss \(\mathcal{L}\) unrendered</p>"),
        "broken.html": _page("<img src='missing.png'>"),
        "remote.html": _page("<p>ok</p>", "<script src='https://cdn.example.org/lib.js'></script>"),
        "to_clean.html": '<meta http-equiv="Refresh" content="0; url=clean.html" />',
        "to_nowhere.html": '<meta http-equiv="Refresh" content="0; url=gone.html" />',
    }
    for name, text in pages.items():
        (tmp_path / name).write_text(text)
    reports = {r.page: r for r in browser.check_pages(tmp_path, pages, screenshots=tmp_path / "shots")}
    assert reports["clean.html"].ok and reports["rendered.html"].ok, [r.problems() for r in reports.values()]
    assert reports["raw.html"].raw_tex and not reports["raw.html"].network
    assert reports["broken.html"].broken_images == [f"{reports['broken.html'].broken_images[0].rsplit('/', 1)[0]}/missing.png"]
    assert reports["remote.html"].network == ["https://cdn.example.org/lib.js"]
    assert reports["to_clean.html"].ok and reports["to_nowhere.html"].missing_redirect == "gone.html"
    assert all(r.screenshot.read_bytes().startswith(PIXEL[:8]) for r in reports.values() if "to_" not in r.page)
