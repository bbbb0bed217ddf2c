"""The course website, built from reports/ and opened in a real browser (headless Chromium).

Skipped, with the reason, where Chromium, Playwright or the site's tools are absent. Screenshots of the
home page and of one step go to $KIT_SCREENSHOTS (CI uploads them), else to a temporary folder.
"""
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from kit import site

CHROMIUM = os.environ.get("KIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _why_not() -> str | None:
    if site.missing_tools():
        return f"the site's tools are not installed ({', '.join(site.missing_tools())}): pip install -e .[site]"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e .[test])"
    if not CHROMIUM:
        return "no Chromium here (Debian: apt-get install chromium; or set KIT_CHROMIUM)"
    return None


in_a_browser = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    site.build(out)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                "--disable-background-networking"])
        yield b
        b.close()


def _shots() -> Path:
    folder = Path(os.environ.get("KIT_SCREENSHOTS") or Path(os.environ.get("TMPDIR", "/tmp")) / "kit-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _loaded_images(page) -> list[tuple[str, int]]:
    return page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src') || '', e.naturalWidth])")


@in_a_browser
def test_the_home_page_shows_the_results_table_and_its_figure(served, browser):
    page = browser.new_page()
    page.goto(served)
    steps = page.eval_on_selector_all("table tbody tr td:first-child",
                                      "cells => cells.map(c => c.innerText).filter(t => /^\\d\\d_/.test(t))")
    assert len(steps) == 10, steps
    figure = [(src, w) for src, w in _loaded_images(page) if src.endswith("steps.png")]
    assert figure and figure[0][1] > 0, "the comparing figure did not load"
    page.screenshot(path=str(_shots() / "home.png"), full_page=True)


@in_a_browser
def test_step_5_is_reached_from_the_home_page_and_shows_its_curves(served, browser):
    page = browser.new_page()
    page.goto(served)
    page.click("text=/Regularization/i >> nth=0")
    page.wait_for_load_state()
    assert "05_regularization" in page.url
    figures = [w for src, w in _loaded_images(page) if src.startswith("data:image/png")]
    assert len(figures) >= 2 and all(w > 0 for w in figures), "the step's curves and mistakes did not load"
    page.screenshot(path=str(_shots() / "step-05.png"), full_page=True)


@in_a_browser
def test_no_page_has_a_broken_link_or_a_missing_image(served, browser):
    page = browser.new_page()
    seen, queue, broken = set(), [served], []
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        response = page.goto(url)
        if response is None or response.status != 200:
            broken.append(f"{url}: {response.status if response else 'no answer'}")
            continue
        if not response.headers.get("content-type", "").startswith("text/html"):
            continue
        for src, width in _loaded_images(page):
            if not src.startswith("http") and width == 0:  # images from other sites cannot load offline
                broken.append(f"{url}: image {src[:60]} did not load")
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
            target = urljoin(url, href).split("#")[0]
            if urlparse(target).netloc == urlparse(served).netloc and target not in seen:
                queue.append(target)
    assert len(seen) >= 15 and not broken, "\n".join(broken)


def test_a_missing_tool_is_named_with_the_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(site, "missing_tools", lambda: ["mkdocs-jupyter"])
    with pytest.raises(site.SiteError, match=r"needs mkdocs-jupyter: pip install -e \.\[site\]"):
        site.build(tmp_path / "site")


def test_a_folder_of_other_files_is_refused_and_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(site, "missing_tools", lambda: [])
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(site.SiteError, match="holds other files, which the build would delete"):
        site.build(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(site.SiteError, match="is a file; --out must name a folder"):
        site.build(tmp_path / "notes.txt")


def test_an_earlier_site_may_be_rebuilt(tmp_path):
    (tmp_path / site.MARK).write_text("")
    (tmp_path / "index.html").write_text("old")
    site._writable_site(tmp_path)


def test_a_folder_the_site_cannot_be_written_into_is_named(monkeypatch):
    monkeypatch.setattr(site, "missing_tools", lambda: [])
    with pytest.raises(site.SiteError, match="cannot write the site beside /proc/kit-site"):
        site.build("/proc/kit-site")


def test_the_build_writes_nothing_into_the_folder_it_is_run_from(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".out.staging" / "assets").mkdir(parents=True)  # what a build killed half way left
    site.build(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .cache/ of mkdocs-jupyter's, no half site
    assert (tmp_path / "out" / site.MARK).exists() and (tmp_path / "out" / "index.html").exists()
