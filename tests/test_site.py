"""The rendered site: built offline from the committed notebooks, and checked in a real headless browser.

The browser test opens the index and every chapter in headless Chromium (Debian's ``chromium`` and
``chromium-driver`` packages, driven by Selenium without Selenium Manager), checks headings, figures and
the absence of error output, and saves one screenshot per page to ``build/screenshots/<page>.png``.
Without the browser it fails, saying how to install it (``make test`` installs it where it can).
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from metagen_utils.errors import NotebookError
from metagen_utils.kit.harness import NOTEBOOKS, notebook_paths
from metagen_utils.results import REPO
from metagen_utils.kit.site import build_site, doc_pages, index_page, notebook_title, toc

SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000"]
ERROR_OUTPUT = ".output.error, .output.traceback, .output.stderr.traceback, div.traceback"


def browser_binaries() -> tuple[str, str]:
    """Chromium and its driver, or the test fails saying what is missing and how to install it."""
    def first_file(override: str, *candidates: str | None) -> str | None:
        candidates = (os.environ[override],) if os.environ.get(override) else candidates
        return next((c for c in candidates if c and Path(c).is_file()), None)

    chromium = first_file("METAGEN_CHROMIUM", "/usr/bin/chromium", shutil.which("chromium"),
                          shutil.which("chromium-browser"))
    driver = first_file("METAGEN_CHROMEDRIVER", "/usr/bin/chromedriver", shutil.which("chromedriver"))
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
    if missing:
        pytest.fail(f"the site's browser test needs headless Chromium; {' and '.join(missing)} not found. Install "
                    "them with `apt-get install -y chromium chromium-driver` (Debian/Ubuntu), or point "
                    "METAGEN_CHROMIUM / METAGEN_CHROMEDRIVER at the binaries", pytrace=False)
    return chromium, driver


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    return build_site(NOTEBOOKS, out / "site", src_dir=out / "site-src")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)  # explicit: no Selenium Manager
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, html: Path, page: str) -> dict:
    """Load ``<page>.html`` from disk, save a full-page screenshot, and report what the page shows."""
    driver.get((html / f"{page}.html").as_uri())
    driver.execute_script("return document.fonts ? document.fonts.ready : null")
    report = driver.execute_script("""
        const main = document.querySelector('main article, article.bd-article, main') || document.body;
        const imgs = [...main.querySelectorAll('img')];
        return {
          title: document.title,
          h1: [...main.querySelectorAll('h1')].map(h => h.textContent.replace(/[#¶]/g, '').trim()),
          images: imgs.map(i => ({src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth})),
          figures: [...main.querySelectorAll('.cell_output img')].map(i => i.currentSrc || i.src),
          errors: main.querySelectorAll(arguments[0]).length,
          text: main.innerText,
          links: [...main.querySelectorAll('a.reference.internal')].map(a => a.getAttribute('href')),
        };""", ERROR_OUTPUT)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    (SCREENSHOTS / f"{page}.png").write_bytes(base64.b64decode(shot["data"]))
    return report


def png_outputs(path: Path) -> int:
    nb = nbformat.read(str(path), as_version=4)
    return sum("image/png" in output.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


def assert_images_rendered(report: dict, page: str) -> None:
    broken = [img["src"] for img in report["images"] if not (img["complete"] and img["width"] > 0)]
    assert not broken, f"{page}: images that did not render in the browser: {broken}"


def assert_no_error_output(report: dict, page: str) -> None:
    assert report["errors"] == 0, f"{page}: {report['errors']} error output(s) on the page"
    assert "Traceback (most recent call last)" not in report["text"], f"{page}: a traceback is on the page"


@pytest.mark.slow
def test_site_renders_every_notebook_with_its_figures_and_no_errors_in_a_real_browser(request):
    browser_binaries()  # first: fail before minutes go into building the site
    site, browser = request.getfixturevalue("site"), request.getfixturevalue("browser")
    paths = notebook_paths()
    index = open_page(browser, site, "index")
    assert "metagen" in index["h1"], f"index: headings {index['h1']}"
    chapters = [link.split("#")[0] for link in index["links"] if link.endswith(".html")]
    expected = [f"{p.stem}.html" for p in paths]
    assert [c for c in dict.fromkeys(chapters) if c in expected] == expected, \
        f"the index lists {chapters}; expected the series in order {expected}"
    assert_images_rendered(index, "index")
    assert_no_error_output(index, "index")

    for path in paths:
        title, _ = notebook_title(path)
        report = open_page(browser, site, path.stem)
        assert title in report["h1"], f"{path.stem}: headings {report['h1']}, expected {title!r}"
        assert title in report["title"], f"{path.stem}: page title {report['title']!r}"
        assert report["figures"], f"{path.stem}: no figure among the cell outputs"
        shown, expected = len(report["figures"]), png_outputs(path)
        assert shown == expected, f"{path.stem}: {shown} figures on the page, {expected} PNG outputs in the file"
        not_png = [src for src in report["figures"] if not src.split("?")[0].endswith(".png")]
        assert not not_png, f"{path.stem}: figures that are not PNG: {not_png}"
        assert_images_rendered(report, path.stem)
        assert_no_error_output(report, path.stem)
        assert (SCREENSHOTS / f"{path.stem}.png").stat().st_size > 10_000

    for page in doc_pages():
        heading = page.read_text().splitlines()[0].lstrip("# ").strip()
        report = open_page(browser, site, page.stem)
        assert heading in report["h1"], f"{page.name}: headings {report['h1']}, expected {heading!r}"
        assert_images_rendered(report, page.stem)
        assert_no_error_output(report, page.stem)


# --- fast checks of what goes into the build ----------------------------------------------------------


def tiny_notebook(folder: Path, name: str, error: bool = False, executed: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name} · A tiny chapter\n\nIt says one thing. Then more."),
                nbformat.v4.new_code_cell("x = 1\nprint(x)", execution_count=1 if executed else None,
                                          outputs=[nbformat.v4.new_output("stream", text="1\n")])]
    if error:
        nb.cells.append(nbformat.v4.new_code_cell("1 / 0", execution_count=2, outputs=[nbformat.v4.new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero", traceback=["Traceback ..."])]))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_build_refuses_a_notebook_with_an_error_output_naming_notebook_and_cell(tmp_path):
    tiny_notebook(tmp_path / "nbs", "01_fine")
    tiny_notebook(tmp_path / "nbs", "02_broken", error=True)
    with pytest.raises(NotebookError, match=r"02_broken\.ipynb: cell 2 .*'1 / 0'.*ZeroDivisionError"):
        build_site(tmp_path / "nbs", tmp_path / "out", src_dir=tmp_path / "src")
    assert not (tmp_path / "out").exists(), "nothing is built when a notebook is refused"


def test_build_refuses_a_notebook_with_a_code_cell_that_never_ran(tmp_path):
    tiny_notebook(tmp_path / "nbs", "01_unrun", executed=False)
    with pytest.raises(NotebookError, match=r"01_unrun\.ipynb: code cell 1 .*never executed"):
        build_site(tmp_path / "nbs", tmp_path / "out", src_dir=tmp_path / "src")


def test_index_lists_the_series_in_order_one_line_each_from_the_title_cells(tmp_path):
    paths = [tiny_notebook(tmp_path, name) for name in ("02_second", "01_first")]
    paths = notebook_paths(tmp_path)
    page = index_page(paths)
    lines = [line for line in page.splitlines() if line.startswith("1. ")]
    assert lines == ["1. [01_first · A tiny chapter](01_first.ipynb) — It says one thing.",
                     "1. [02_second · A tiny chapter](02_second.ipynb) — It says one thing."]
    assert toc(paths).splitlines()[-2:] == ["- file: 01_first", "- file: 02_second"]
    pages = [tmp_path / "results.md"]
    assert toc(paths, pages).splitlines()[-3:] == ["- file: 01_first", "- file: 02_second", "- file: results"]


def test_every_committed_notebook_has_a_title_cell_for_the_index():
    for path in notebook_paths(NOTEBOOKS):
        title, summary = notebook_title(path)
        assert title.startswith(path.name[:2]), f"{path.name}: title {title!r} does not start with its number"
        assert summary, f"{path.name}: no sentence under the title for the index"


@pytest.mark.parametrize("ci", ["1", ""])
def test_a_missing_browser_fails_naming_it_with_or_without_ci(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("METAGEN_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("METAGEN_CHROMEDRIVER", str(tmp_path / "no-chromedriver"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="chromium and chromedriver not found.*apt-get install"):
        browser_binaries()
