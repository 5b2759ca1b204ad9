"""How readable each notebook is: sentence length, paragraph length, code cell and line length.

    python -m metagen_utils.kit.readability [NOTEBOOK ...] [--detail]   # exit 1 if one is over a bar

The prose is the markdown with code, formulas, headings, tables and HTML removed. d2l's chapters
measure about 21 words a sentence with 16 % of sentences over 30 words; this kit aims plainer, at
most 18 words a sentence and 10 % over 30, and no paragraph over 120 words. Code cells stay short
(15 lines; the ``parameters`` cell is exempt, being a list of settings) and so do code lines
(88 characters): longer lines are cut off in a laptop-width JupyterLab and on the rendered site.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..errors import MetagenError
from .harness import NOTEBOOKS, notebook_paths

MAX_MEAN_WORDS = 18
MAX_SHARE_OVER_30 = 0.10
LONG_SENTENCE = 30  # words
MAX_PARAGRAPH_WORDS = 120
MAX_CELL_LINES = 15
MAX_LINE_CHARS = 88


class ReadabilityError(MetagenError, ValueError):
    """A path given to the readability check is missing or is not a notebook."""


@dataclass(frozen=True)
class Readability:
    """One notebook's measures; cell indices count every cell of ``nb.cells`` from 0."""

    mean_words: float
    share_over_30: float
    sentences: int
    long_sentences: list[tuple[int, int, str]]   # (cell, words, first words), longest first
    long_paragraphs: list[tuple[int, int, str]]  # (cell, words, first 60 characters)
    long_cells: list[tuple[int, int]]            # (cell, lines)
    long_lines: list[tuple[int, int, int]]       # (cell, line number from 1, characters)


# --- prose --------------------------------------------------------------------------------------------------

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.S)
INLINE_MATH = re.compile(r"(?<!\\)\$[^$\n]+\$")
HTML = re.compile(r"<!--.*?-->|</?[A-Za-z][^>\n]*>", re.S)
IMAGE_OR_LINK = re.compile(r"!?\[([^\]\n]*)\](?:\([^)\n]*\)|\[[^\]\n]*\])")
LINK_DEFINITION = re.compile(r"^[ \t]*\[[^\]\n]+\]:.*$", re.M)
DROPPED_LINE = re.compile(r"^[ \t]*(#|\|)")  # headings and table rows
LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+")
# A sentence ends at . ! or ? (then maybe a closing bracket or quote), whitespace, and a capital letter,
# maybe behind an opening quote or bracket.
CAPITAL = "A-ZÀ-ÖØ-ÞΑ-ΩА-Я"
SENTENCE_END = re.compile(rf"([.!?][\"'”’)\]]*)\s+(?=[\"'“‘(\[]?[{CAPITAL}])")
ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "vs.", "cf.", "fig.", "eq."}


def _words(text: str) -> int:
    return sum(any(ch.isalnum() for ch in token) for token in text.split())


def paragraphs(markdown: str) -> list[str]:
    """The prose of a markdown cell as paragraphs, each on one line; a list item is a paragraph."""
    text = FENCE.sub("\n\n", markdown)
    text = CODE_SPAN.sub("", text)  # before math: a ``$`` inside code is not a formula
    text = DISPLAY_MATH.sub("", text)
    text = INLINE_MATH.sub("", text)
    text = HTML.sub("", text)
    text = IMAGE_OR_LINK.sub(r"\1", text)
    text = LINK_DEFINITION.sub("", text)
    found: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.strip() or DROPPED_LINE.match(line):
            found.append([])
            continue
        item = LIST_ITEM.match(line)
        if item:  # a new list item ends the paragraph before it
            found.append([])
            line = line[item.end():]
        # Emphasis markers go after list markers are read; an underscore inside a word (c_j) stays.
        line = re.sub(r"\*+|(?<!\w)_+|_+(?!\w)", "", line)
        found[-1].append(line.strip())
    joined = (" ".join(" ".join(lines).split()) for lines in found)  # one space where code was cut out
    return [paragraph for paragraph in joined if _words(paragraph)]


def sentences(paragraph: str) -> list[str]:
    """The paragraph split at sentence ends; the abbreviations of ``ABBREVIATIONS`` end none."""
    found, start = [], 0
    for end in SENTENCE_END.finditer(paragraph):
        sentence = paragraph[start:end.end(1)]
        if sentence.split()[-1].lstrip("\"'“‘([").lower() in ABBREVIATIONS:
            continue
        found.append(sentence.strip())
        start = end.end()
    found.append(paragraph[start:].strip())
    return [sentence for sentence in found if _words(sentence)]


# --- measuring ----------------------------------------------------------------------------------------------


def _read(path: Path) -> nbformat.NotebookNode:
    if not path.is_file():
        raise ReadabilityError(f"{path}: no such notebook")
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:  # nbformat raises several unrelated types for a file that is not a notebook
        raise ReadabilityError(f"{path} is not a notebook: {e}") from None
    return nb


def measure(path_or_notebook: str | Path | nbformat.NotebookNode) -> Readability:
    """The readability measures of a notebook, given as a path or as a read notebook."""
    nb = path_or_notebook if isinstance(path_or_notebook, dict) else _read(Path(path_or_notebook))
    counts: list[int] = []
    long_sentences, long_paragraphs, long_cells, long_lines = [], [], [], []
    for index, cell in enumerate(nb["cells"]):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "markdown":
            for paragraph in paragraphs(source):
                if _words(paragraph) > MAX_PARAGRAPH_WORDS:
                    long_paragraphs.append((index, _words(paragraph), paragraph[:60]))
                for sentence in sentences(paragraph):
                    counts.append(_words(sentence))
                    if counts[-1] > LONG_SENTENCE:
                        long_sentences.append((index, counts[-1], " ".join(sentence.split()[:8])))
        elif cell.get("cell_type") == "code":
            lines = source.splitlines()
            while lines and not lines[-1].strip():  # trailing blank lines are not seen as the cell's
                lines.pop()
            if len(lines) > MAX_CELL_LINES and "parameters" not in cell.get("metadata", {}).get("tags", []):
                long_cells.append((index, len(lines)))
            long_lines += [(index, number, len(line)) for number, line in enumerate(lines, 1)
                           if len(line) > MAX_LINE_CHARS]
    return Readability(
        mean_words=sum(counts) / len(counts) if counts else 0.0,
        share_over_30=sum(n > LONG_SENTENCE for n in counts) / len(counts) if counts else 0.0,
        sentences=len(counts), long_sentences=sorted(long_sentences, key=lambda s: -s[1]),
        long_paragraphs=long_paragraphs, long_cells=long_cells, long_lines=long_lines)


# A notebook stands alone: it never points at a text its reader does not have.
UNSEEN_TEXT = re.compile(r"\b(?:the|source) text\b|\boriginal listing\b", re.I)
# ... and draws its idea: a code cell calls one of plot's concept diagrams.
DIAGRAM_CALL = re.compile(r"\bplot\.\w+_diagram\(")


def problems(path: str | Path) -> list[str]:
    """What is over a bar in the notebook at ``path``, one line each (empty when nothing is). When the
    sentences are too long on average, each sentence over 30 words is listed, longest first. Also named:
    a reference to a text the reader does not have, and a notebook without a concept diagram."""
    nb = _read(Path(path))
    name, lines = Path(path).name, _problems(Path(path).name, measure(nb))
    for index, cell in enumerate(nb.cells):
        found = UNSEEN_TEXT.search(cell.source) if cell.cell_type == "markdown" else None
        if found:
            lines.append(f"{name}: cell {index} refers to {found.group(0)!r}, which the reader does not have")
    if not any(cell.cell_type == "code" and DIAGRAM_CALL.search(cell.source) for cell in nb.cells):
        lines.append(f"{name}: no concept diagram (a code cell calling plot.<name>_diagram())")
    return lines


def _problems(name: str, found: Readability) -> list[str]:
    lines = []
    if found.mean_words > MAX_MEAN_WORDS:
        lines.append(f"{name}: {found.mean_words:.1f} words a sentence on average (at most {MAX_MEAN_WORDS})")
    if found.share_over_30 > MAX_SHARE_OVER_30:
        lines.append(f"{name}: {found.share_over_30:.0%} of {found.sentences} sentences have over "
                     f"{LONG_SENTENCE} words (at most {MAX_SHARE_OVER_30:.0%})")
    if lines:
        lines += [f"{name}: cell {cell} has a sentence of {words} words: '{start} …'"
                  for cell, words, start in found.long_sentences]
    lines += [f"{name}: cell {cell} has a paragraph of {words} words (at most {MAX_PARAGRAPH_WORDS}): "
              f"'{start} …'" for cell, words, start in found.long_paragraphs]
    lines += [f"{name}: cell {cell} has {n} lines (at most {MAX_CELL_LINES} outside the parameters cell)"
              for cell, n in found.long_cells]
    lines += [f"{name}: cell {cell}, line {line} has {n} characters (at most {MAX_LINE_CHARS})"
              for cell, line, n in found.long_lines]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metagen_utils.kit.readability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="notebooks to measure (default: the series in notebooks/)")
    parser.add_argument("--detail", action="store_true", help="list every problem under the table")
    args = parser.parse_args(argv)
    try:
        paths = [Path(p) for p in args.paths] or notebook_paths(NOTEBOOKS)
        measured = {path: measure(path) for path in paths}
        found = [line for path, m in measured.items() for line in _problems(path.name, m)]
    except MetagenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'notebook':<34} {'words/sentence':>14} {'% over 30':>9} {'paragraphs':>10} {'cells':>5} "
          f"{'lines':>5}")
    for path, m in measured.items():
        print(f"{path.name:<34} {m.mean_words:>14.1f} {m.share_over_30:>9.0%} {len(m.long_paragraphs):>10} "
              f"{len(m.long_cells):>5} {len(m.long_lines):>5}")
    print(f"(bars: {MAX_MEAN_WORDS} words a sentence, {MAX_SHARE_OVER_30:.0%} over {LONG_SENTENCE} words, "
          f"{MAX_PARAGRAPH_WORDS} words a paragraph, {MAX_CELL_LINES} lines a cell, "
          f"{MAX_LINE_CHARS} characters a line)")
    if args.detail and found:
        print("\n" + "\n".join(found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
