"""matplotlib for convlab's figures: every one is a file, logged to MLflow or written to a report."""

from __future__ import annotations


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend: every convlab figure is a file."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def figure(**kwargs):
    """A matplotlib ``Figure`` outside pyplot (``Figure(**kwargs)``): a run's figures are drawn
    and logged in a thread of their own (``record.log_figure``), which matplotlib supports for
    figures pyplot does not manage; nothing needs closing, it is freed once logged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # drawn to pixels, as pyplot's Agg backend would
    return fig
