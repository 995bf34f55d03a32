"""PNG plots for the reports, drawn with matplotlib's Agg canvas (no display, no global backend switch)."""
from __future__ import annotations

import io
import math
from typing import Mapping, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from coseg.atomic import PathLike, write_bytes_atomic


def _save(figure: Figure, path: PathLike) -> None:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())


_PLOTTED_LIMIT = 1e300  # beyond it a series' span (max - min) may overflow the axis


def line_plot(path: PathLike, x: Sequence[int], series: Mapping[str, Sequence[float]], title: str, xlabel: str,
              ylabel: str, mark: Optional[tuple[float, str]] = None, log_x: bool = False) -> None:
    """Write a PNG (about 640×360 px) with one line per ``series`` entry over integer ``x`` (epochs, K); NaN,
    infinite and huge values (beyond ±10³⁰⁰) are gaps (a series without any other value says so in the legend; a value
    between gaps is drawn as a dot), the x axis spans every ``x``. ``mark``: a vertical dashed line at x with a label
    (e.g. the best epoch)."""
    if not series:
        raise ValueError(f"{title}: nothing to plot")
    figure = Figure(figsize=(6.4, 3.6))
    axes = figure.add_subplot()
    for name, values in series.items():
        if len(values) != len(x):
            raise ValueError(f"{title}: series '{name}' has {len(values)} values for {len(x)} x positions")
        values = [v if abs(v) <= _PLOTTED_LIMIT else math.nan for v in values]
        shown = any(not math.isnan(v) for v in values)
        # beyond 30 points only the values between gaps are marked: no line runs through them
        isolated = [i for i, v in enumerate(values) if not math.isnan(v)
                    and all(not 0 <= n < len(values) or math.isnan(values[n]) for n in (i - 1, i + 1))]
        axes.plot(x, values, marker="o", markevery=None if len(x) <= 30 else isolated, markersize=3,
                  label=name if shown else f"{name} (no finite value)")
    if mark is not None:
        axes.axvline(mark[0], color="#888", linestyle="--", linewidth=1, label=mark[1])
    if log_x:
        axes.set_xscale("log", base=2)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if x and not log_x:
        margin = max(0.5, 0.05 * (max(x) - min(x)))  # every x, even where all values are NaN; one x: x ± 0.5
        axes.set_xlim(min(x) - margin, max(x) + margin)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    _save(figure, path)
