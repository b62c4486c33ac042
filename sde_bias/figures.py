"""Figures drawn with matplotlib's object API (no pyplot state, no display needed): the
helpers every plotting module shares."""

from __future__ import annotations


def figure(w=6.4, h=4.2, ncols=1, nrows=1, **kw):
    """A ``w x h`` inch figure with constrained layout and its ``nrows x ncols`` axes (always
    a 2-D array)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def palette(n):
    """``n`` colours of matplotlib's ``tab10`` cycle."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


__all__ = ["figure", "palette"]
