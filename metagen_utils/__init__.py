"""metagen_utils: the tested library behind the metagen notebooks.

Modules, one responsibility each: ``config`` (profiles), ``data`` (image sets), ``glyphs`` (the embedded
data set), ``folders`` (local Omniglot-layout and class-per-folder data), ``preprocess`` (OpenCV),
``tasks`` (episodic K-shot sampling), ``plot`` (figures), ``results`` (metrics files), ``harness``
(executing the notebook series).
"""
__version__ = "0.1.0"
