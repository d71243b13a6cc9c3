"""matplotlib for convlab's figures: every one is a file, logged to MLflow or written to a report."""

from __future__ import annotations


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend: every convlab figure is a file."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt
