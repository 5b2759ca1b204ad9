"""Readability: the prose rules on small notebooks built here, then the bars on every notebook."""
from __future__ import annotations

import nbformat
import pytest

from metagen_utils.errors import MetagenError
from metagen_utils.kit.harness import NOTEBOOKS, notebook_paths
from metagen_utils.kit.readability import (MAX_CELL_LINES, MAX_LINE_CHARS, MAX_PARAGRAPH_WORDS, measure,
                                           paragraphs, problems, sentences)


def notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def md(text: str):
    return nbformat.v4.new_markdown_cell(text)


def code(text: str, tags: list[str] | None = None):
    return nbformat.v4.new_code_cell(text, metadata={"tags": tags} if tags else {})


def prose(markdown: str) -> list[str]:
    return [s for p in paragraphs(markdown) for s in sentences(p)]


def test_formulas_code_headings_tables_and_html_are_not_prose():
    text = ("# A heading\n\nThe loss $L = x^2$ uses `torch.sum(x)` and <b>bold</b> text.\n\n"
            "$$\\int f(x)\\,dx$$\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('Hi. There')\n```\n")
    assert prose(text) == ["The loss uses and bold text."]


def test_links_keep_their_text_and_emphasis_loses_its_markers():
    assert prose("See [the guide](https://example.org/a.html) and ![a plot](fig.png), **bold** *it*.") \
        == ["See the guide and a plot, bold it."]


def test_a_sentence_ends_at_a_full_stop_before_a_capital_only():
    assert prose("One two. Three four! Five? (Six seven.) \"Eight.\" nine 0.5. ten") \
        == ["One two.", "Three four!", "Five?", "(Six seven.)", "\"Eight.\" nine 0.5. ten"]


def test_abbreviations_do_not_end_a_sentence():
    assert prose("Short names, e.g. The VAE, i.e. Some thing, etc. And more, cf. Fig. 2 and Eq. 3.") \
        == ["Short names, e.g. The VAE, i.e. Some thing, etc. And more, cf. Fig. 2 and Eq. 3."]


def test_list_items_and_blank_lines_end_sentences_and_paragraphs():
    text = "Intro without a stop\n- first item\n  continued here\n* second\n1. third\n\nlast paragraph"
    assert paragraphs(text) == ["Intro without a stop", "first item continued here", "second", "third",
                                "last paragraph"]
    assert measure(notebook(md(text))).sentences == 5


def test_words_are_tokens_with_a_letter_or_digit():
    nb = notebook(md("Three real words — and – 2 more."))
    assert measure(nb).mean_words == 6  # Three, real, words, and, 2, more: not the dashes


def test_mean_words_and_share_over_30_count_every_sentence():
    nb = notebook(md("word " * 31 + "end. Short one here. Another short one."))
    found = measure(nb)
    assert (found.sentences, found.share_over_30) == (3, pytest.approx(1 / 3))
    assert found.mean_words == pytest.approx((32 + 3 + 3) / 3)
    assert found.long_sentences == [(0, 32, "word word word word word word word word")]


def test_a_paragraph_over_120_words_is_reported_and_one_of_120_is_not():
    nb = notebook(md("Fine. " * MAX_PARAGRAPH_WORDS), md("Title\n\n" + "Long. " * (MAX_PARAGRAPH_WORDS + 1)))
    assert measure(nb).long_paragraphs == [(1, 121, ("Long. " * 10)[:60])]


def test_a_16_line_code_cell_is_reported_but_not_a_16_line_parameters_cell(tmp_path):
    lines = "\n".join(f"x{i} = {i}" for i in range(MAX_CELL_LINES + 1))
    fifteen = lines.rsplit("\n", 1)[0] + "\n\n"
    nb = notebook(code(lines, ["parameters"]), code(lines + "\n\n\n"), code(fifteen),
                  code("plot.maml_diagram()"))
    assert measure(nb).long_cells == [(1, 16)]
    path = tmp_path / "01_fixture.ipynb"
    nbformat.write(nb, str(path))
    assert problems(path) == [
        "01_fixture.ipynb: cell 1 has 16 lines (at most 15 outside the parameters cell)"]


def test_an_89_character_line_is_reported_in_any_code_cell_the_parameters_cell_too():
    long, fine = "y = '" + "a" * (MAX_LINE_CHARS - 5) + "'", "z = '" + "a" * (MAX_LINE_CHARS - 6) + "'"
    assert (len(long), len(fine)) == (89, 88)
    nb = notebook(code(f"x = 1\n{long}", ["parameters"]), md(long), code(f"{fine}\n{long}"))
    assert measure(nb).long_lines == [(0, 2, 89), (2, 2, 89)]


def test_a_missing_path_raises_an_error_naming_it(tmp_path):
    with pytest.raises(MetagenError, match="nowhere.ipynb"):
        measure(tmp_path / "nowhere.ipynb")


def test_a_file_that_is_not_a_notebook_raises_an_error_naming_it(tmp_path):
    path = tmp_path / "notes.ipynb"
    path.write_text("not json")
    with pytest.raises(MetagenError, match="notes.ipynb"):
        problems(path)


def test_a_reference_to_an_unseen_text_and_a_missing_diagram_are_reported(tmp_path):
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("As the original listing shows, it works."),
        nbformat.v4.new_code_cell("x = 1")]), str(path))
    assert problems(path) == ["01_x.ipynb: cell 0 refers to 'original listing', which the reader does not have",
                              "01_x.ipynb: no concept diagram (a code cell calling plot.<name>_diagram())"]
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("The idea, drawn:"),
        nbformat.v4.new_code_cell('plot.finish(plot.maml_diagram(), "loops")')]), str(path))
    assert problems(path) == []


@pytest.mark.parametrize("path", notebook_paths(NOTEBOOKS), ids=lambda p: p.name)
def test_every_notebook_of_the_series_is_within_the_readability_bars(path):
    found = problems(path)
    if found:  # the problems themselves, one a line, rather than pytest's diff of two lists
        pytest.fail(f"{len(found)} readability problem(s):\n" + "\n".join(found), pytrace=False)
