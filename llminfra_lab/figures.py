"""The book's one figure style, applied to every figure the package draws.

`llminfra_lab/__init__.py` calls `use()` when the package is imported, so every chapter's
figure cells and every lab get it without a line in a chapter's module. Two things make a
figure legible at the website's column width (about 730 px, 390 px on a phone):

- text a little larger than matplotlib's default, light grids and no top or right spines,
  the same in every chapter;
- figures rendered at twice their pixel size (`DISPLAY_SCALE`): in Jupyter and in the
  book the inline backend stores a 2x PNG with its display size in the output's metadata,
  so a browser draws it sharp at 1x, and `savefig` writes `SAVE_DPI`.

Nothing else changes: a figure's size in inches, and the `<Figure size WxH>` text that
nbval compares, stay as the module drew them.
"""
from __future__ import annotations

import matplotlib
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

__all__ = ["STYLE", "DISPLAY_SCALE", "SAVE_DPI", "use", "box", "arrow"]

DISPLAY_SCALE = 2          # pixels stored per pixel shown (the inline backend's "retina")
SAVE_DPI = 200             # fig.savefig(...) without dpi=

STYLE: dict[str, object] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.framealpha": 0.9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,        # grids (where a module asks for one) behind the data
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.bbox": "tight",
    "savefig.dpi": SAVE_DPI,
}


def use() -> None:
    """Apply STYLE to matplotlib, and 2x PNGs to Jupyter's inline backend when in a kernel."""
    matplotlib.rcParams.update(STYLE)
    _inline_at_display_scale()


def _inline_at_display_scale() -> None:
    """In an IPython kernel, store figures as 2x PNGs ("retina") with their 1x display size."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:            # plain Python: nothing is displayed inline
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    set_matplotlib_formats("retina")


# ----------------------------------------------------------------------------- schematics
def box(ax, x: float, y: float, w: float, h: float, text: str, color, *, rounded: bool = False,
        fontsize: float = 8, edge="0.25", lw: float = 1.0, alpha: float = 1.0) -> None:
    """A labelled box of a schematic: lower-left corner (x, y), size w x h, its text centred."""
    if rounded:
        patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec=edge, lw=lw, alpha=alpha)
    else:
        patch = Rectangle((x, y), w, h, facecolor=color, edgecolor=edge, linewidth=lw, alpha=alpha)
    ax.add_patch(patch)
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def arrow(ax, start, end, *, text: str = "", color="0.2", lw: float = 1.2, head: float = 12,
          text_dy: float = 0.12, text_size: float = 7.5) -> None:
    """An arrow of a schematic from `start` to `end`, with an optional label above its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=head, lw=lw, color=color))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + text_dy, text, ha="center",
                fontsize=text_size, color=color)
