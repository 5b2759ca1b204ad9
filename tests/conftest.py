"""Shared test setup.

Notebook kernels started by nbval inherit this process's environment: ``CI=1`` keeps progress bars out
of their outputs (as when committed outputs were made), and ``METAGEN_RESULTS`` sends their figures and
metrics to a scratch folder instead of the repository's ``results/``; ``kernels.pin_cpu_kernels()``, called
here before anything computes, holds torch's and NumPy's CPU kernels at AVX2 (``kernels.CPU_KERNELS``) in
this process and the kernels it starts, so the unit tests and the notebooks compute as the committed
outputs were computed, on AVX-512 machines too.
"""
import os
import shutil
import tempfile

import pytest

from metagen_utils.kernels import pin_cpu_kernels

pin_cpu_kernels()   # before NumPy or torch computes anything here or in a notebook kernel

os.environ.setdefault("CI", "1")
os.environ["METAGEN_RESULTS"] = tempfile.mkdtemp(prefix="metagen-test-results-")


def pytest_unconfigure(config):
    # The scratch folder outlives every test that reads it; leave nothing behind in /tmp.
    shutil.rmtree(os.environ["METAGEN_RESULTS"], ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.fspath.ext == ".ipynb":
            item.add_marker(pytest.mark.notebooks)
            item.add_marker(pytest.mark.slow)
    # Checks of what the notebooks wrote go last, after nbval has executed them; with no notebook in
    # this run there is nothing for them to check, so they are deselected (pytest reports the count).
    after = [item for item in items if item.get_closest_marker("after_notebooks")]
    if after and not any(item.fspath.ext == ".ipynb" for item in items):
        config.hook.pytest_deselected(items=after)
        items[:] = [item for item in items if item not in after]
    items.sort(key=lambda item: item.get_closest_marker("after_notebooks") is not None)


@pytest.fixture(scope="session")
def glyph_set():
    """The default glyph set (built once and cached under data/glyphs/, checked against the manifest)."""
    from metagen_utils.data.glyphs import load_glyphs

    return load_glyphs(progress=False)


@pytest.fixture
def one_thread():
    """Run on one thread: on a shared 2-core machine two threads spin-wait for each other and a test
    takes ten times as long; one thread is steadier. Use with ``pytestmark = pytest.mark.usefixtures``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
