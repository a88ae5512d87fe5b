"""Shared test set-up.

Triton decides whether to interpret kernels on the CPU when it is first imported, and a
test elsewhere may import it first (torch's FLOP counter pulls it in). On a machine
without a GPU, ask for the interpreter before any test runs, as llminfra_lab.kernels
would, so the kernel tests do not depend on the order the files run in.

Figures: every test draws with the Agg backend, and figures are closed after each test
(the autouse fixture below). `drawn` is the one check that a plotting function drew
something: tests of plots call it rather than only calling the plot.
"""
import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _drawn(fig_or_ax, min_artists: int = 1, title: str | None = None):
    """Assert that a figure (or axes) holds at least `min_artists` drawn artists (lines,
    patches, collections, images, texts) across its axes, and, if given, that `title`
    appears in an axes title or the figure's suptitle. Returns the figure."""
    fig = getattr(fig_or_ax, "figure", None) if not hasattr(fig_or_ax, "axes") or hasattr(fig_or_ax, "plot") \
        else fig_or_ax
    fig = fig or fig_or_ax
    axes = fig.axes
    assert axes, "the figure has no axes"
    count = sum(len(ax.lines) + len(ax.patches) + len(ax.collections) + len(ax.images) + len(ax.texts)
                for ax in axes)
    assert count >= min_artists, f"the figure draws {count} artists, expected at least {min_artists}"
    if title is not None:
        titles = [ax.get_title() for ax in axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
        assert any(title in t for t in titles), f"no title contains {title!r}: {titles}"
    return fig


@pytest.fixture
def drawn():
    """The figure check: ``drawn(fig_or_ax, min_artists=1, title=None)``."""
    return _drawn
