"""Figures written to files, the one way mmbcn draws: a matplotlib ``Figure`` of its own, never
pyplot, so the user's backend and open figures are left as they are and nothing is drawn on a
display; matplotlib is imported only when a figure is made."""

__all__ = ['new_figure', 'save_png']


def new_figure(**kwargs):
    """A ``matplotlib.figure.Figure(**kwargs)`` that no pyplot state holds (nothing to close)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_png(figure, path, dpi: int = 100):
    """Write ``figure`` as a PNG to ``path`` (a file name or a binary file object); returns
    ``path``."""
    figure.savefig(path, format='png', dpi=dpi)
    return path
