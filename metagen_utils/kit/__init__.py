"""The machinery around the notebooks, apart from what they teach: ``harness`` (runs the series),
``committed`` (the committed metrics and README's table), ``site`` (the rendered site), ``assignments``
(student versions and the course), ``readability`` (sentence, paragraph, cell and line lengths)."""
