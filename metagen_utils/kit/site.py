"""The rendered site: the executed notebooks as a static HTML book (Jupyter Book 1.x, Sphinx), offline.

    python -m metagen_utils.kit.site [--out build/site] [--notebooks notebooks]

The committed notebooks are rendered as they are (never re-executed): an index page lists the series in
order, one line per notebook taken from its title cell, then one chapter per notebook with its figures
as PNG, then the pages of ``docs/`` (the measurements behind the kit's choices). A notebook with an error output, or a code cell that was never executed, is refused before
anything is built. The HTML lands in ``<out>/_build/html``; ``index.html`` is the entry page.

The configuration (``site/_config.yml``) switches off everything that would reach for the network at
build time: notebook execution, launch buttons, repository links, comments, Thebe and intersphinx.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from ..errors import MetagenError, NotebookError
from ..files import write_atomic
from .harness import NOTEBOOKS, notebook_paths
from ..results import REPO

CONFIG_TEMPLATE = REPO / "site" / "_config.yml"
DOCS = REPO / "docs"        # Markdown pages rendered after the notebooks, in name order
DEFAULT_OUT = REPO / "build" / "site"
DEFAULT_SRC = REPO / "build" / "site-src"


class SiteError(MetagenError, RuntimeError):
    """The site cannot be built: a notebook is not fit to render, or Jupyter Book failed."""


def _first_line(source: str) -> str:
    lines = source.strip().splitlines()
    return lines[0] if lines else ""


def check_renderable(path: Path) -> None:
    """Refuse a notebook that carries an error output or has a code cell that never ran.

    The site shows committed outputs; a traceback or an empty cell in them means the notebook was not
    regenerated cleanly (``make notebooks``), and rendering it would publish the failure.
    """
    nb = nbformat.read(str(path), as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                raise NotebookError(
                    f"{path.name}: cell {index} (execution count {cell.get('execution_count')}, starting "
                    f"{_first_line(cell.source)!r}) has an error output {output.get('ename')}: "
                    f"{output.get('evalue')}; the site renders committed outputs and allows no error cells "
                    "(fix the notebook and run `make notebooks`)")
        if cell.source.strip() and cell.get("execution_count") is None:
            raise NotebookError(
                f"{path.name}: code cell {index} (starting {_first_line(cell.source)!r}) was never executed; "
                "the site renders the executed notebooks (run `make notebooks`)")


def notebook_title(path: Path) -> tuple[str, str]:
    """The notebook's title (its first ``# `` heading) and the first sentence after it, for the index."""
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.strip().splitlines()
        if not lines or not lines[0].startswith("# "):
            break
        title = lines[0][2:].strip()
        paragraph = []
        for line in lines[1:]:
            if not line.strip():
                if paragraph:
                    break
                continue
            if line.lstrip().startswith(("#", "-", "*", "|", ">")) and not paragraph:
                break
            paragraph.append(line.strip())
        text = " ".join(paragraph)
        match = re.match(r"(.+?[.!?])(\s|$)", text)
        return title, (match.group(1) if match else text)
    raise NotebookError(f"{path.name}: the first cell must be a markdown title cell starting with '# '")


def index_page(paths: list[Path]) -> str:
    """The site's front page: the series in order, one line per notebook."""
    lines = ["# metagen", "",
             "Meta-learning for few-shot image generation, as notebooks that run. The series, in order:", ""]
    for path in paths:
        title, summary = notebook_title(path)
        lines.append(f"1. [{title}]({path.name})" + (f" — {summary}" if summary else ""))
    lines += ["", "Every page shows the outputs committed with the notebooks (`make notebooks`); the test "
              "suite re-executes them and compares.", ""]
    return "\n".join(lines)


def toc(paths: list[Path], pages: list[Path] = ()) -> str:
    """``_toc.yml`` (sphinx-external-toc): the index, each notebook in series order, then the pages."""
    lines = ["format: jb-book", "root: index", "chapters:"]
    lines += [f"- file: {path.stem}" for path in [*paths, *pages]]
    return "\n".join(lines) + "\n"


def doc_pages(docs: Path = DOCS) -> list[Path]:
    """The Markdown pages of ``docs/`` that the site renders after the notebooks."""
    return sorted(docs.glob("*.md")) if docs.is_dir() else []


def assemble(paths: list[Path], src: Path, pages: list[Path] = ()) -> Path:
    """Write the Jupyter Book source folder: config, table of contents, index page, the notebooks and
    the pages."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    shutil.copyfile(CONFIG_TEMPLATE, src / "_config.yml")
    (src / "_toc.yml").write_text(toc(paths, pages))
    (src / "index.md").write_text(index_page(paths))
    for path in [*paths, *pages]:
        shutil.copyfile(path, src / path.name)
    return src


def jupyter_book_command() -> list[str]:
    """The ``jupyter-book`` of the environment running this module (the kit's .venv)."""
    beside = Path(sys.executable).with_name("jupyter-book")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    raise SiteError("jupyter-book (Jupyter Book 1.x) is not installed in this environment; install the kit's "
                    "pinned requirements (make setup)")


def build_site(notebooks_dir: str | Path = NOTEBOOKS, out_dir: str | Path = DEFAULT_OUT,
               src_dir: str | Path | None = None, quiet: bool = True) -> Path:
    """Render the notebooks of ``notebooks_dir`` into a static HTML site; return the HTML folder
    (``<out_dir>/_build/html``, whose ``index.html`` is the front page).

    Refuses, naming the notebook and cell, any notebook with an error output or an unexecuted code cell.
    Sphinx warnings do not fail the build; a failed build, or a chapter page missing from the output,
    raises :class:`SiteError` with Jupyter Book's log.
    """
    paths = notebook_paths(Path(notebooks_dir))
    for path in paths:  # every notebook is checked before minutes go into the build
        check_renderable(path)
    out_dir = Path(out_dir).resolve()
    pages = doc_pages()
    src = assemble(paths, Path(src_dir).resolve() if src_dir else DEFAULT_SRC, pages)
    html = out_dir / "_build" / "html"
    if html.exists():  # no pages left over from notebooks that are gone
        shutil.rmtree(html)
    command = jupyter_book_command() + ["build", str(src), "--path-output", str(out_dir), "--builder", "html"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=src)
    log = proc.stdout + proc.stderr
    write_atomic(out_dir / "build.log", lambda tmp: tmp.write_text(log))
    if not quiet:
        print(log, end="")
    if proc.returncode != 0:
        raise SiteError(f"jupyter-book build failed (exit {proc.returncode}); the end of its log "
                        f"({out_dir / 'build.log'}):\n{log[-4000:]}")
    missing = [name for name in ["index"] + [p.stem for p in [*paths, *pages]]
               if not (html / f"{name}.html").is_file()]
    if missing:
        raise SiteError(f"jupyter-book finished but wrote no page for {missing} in {html}; see "
                        f"{out_dir / 'build.log'}")
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metagen_utils.kit.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: build/site)")
    parser.add_argument("--notebooks", default=str(NOTEBOOKS), help="the series (default: notebooks/)")
    parser.add_argument("--verbose", action="store_true", help="print Jupyter Book's log")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        html = build_site(args.notebooks, args.out, quiet=not args.verbose)
    except MetagenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"site built in {time.perf_counter() - start:.1f} s; open {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
