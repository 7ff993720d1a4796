# Copyright (c) mdeq_mm authors. All rights reserved.
"""Results as files and tables: the JSON + PNG pair every measurement
writes, markdown tables and side-by-side bar / line panels (used by the
run-log reader, the video evaluation and the tools)."""
import json
import os
import os.path as osp
from typing import Any, Callable, Dict, Iterable, List, Sequence


def save_results(data, png_path: str, plot: Callable) -> str:
    """Save ``data`` as JSON beside ``png_path`` (same stem; first, so that
    a failing plot loses nothing), then draw ``plot(data, png_path)``;
    creates the folder and returns the JSON path."""
    os.makedirs(osp.dirname(osp.abspath(png_path)), exist_ok=True)
    json_path = osp.splitext(png_path)[0] + '.json'
    with open(json_path, 'w') as f:
        json.dump(data, f, indent=1)
    plot(data, png_path)
    return json_path


def fmt(value, spec: str = '', missing: str = '-') -> str:
    """``format(value, spec)``, or ``missing`` for None."""
    return missing if value is None else format(value, spec)


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A markdown table: the header, its rule and one line per row (each
    cell as ``str``; format numbers before, e.g. with :func:`fmt`)."""
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(map(str, row)) + ' |' for row in rows]
    return '\n'.join(lines)


def plot_panels(path: str, panels: List[Dict[str, Any]],
                size=(4.5, 4)) -> None:
    """Draw panels side by side into ``path`` (PNG). Each panel is a dict
    with a ``title`` (optional ``xlabel``, ``ylabel``, ``xscale`` 'log2',
    ``yscale`` 'log', ``hline`` (a y value), ``legend``) and either

    * ``categories`` and ``bars``: ``{series: values per category}``,
      grouped bars (a missing value draws as 0), or
    * ``lines``: ``[(label, xs, ys, style)]``; a style may carry a colour
      index as ``'C3'``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(size[0] * len(panels), size[1]))
    for ax, p in zip(axes[0], panels):
        if 'bars' in p:
            cats, series = p['categories'], p['bars']
            width = 0.8 / len(series)
            for k, (name, values) in enumerate(series.items()):
                ax.bar([i + k * width for i in range(len(cats))],
                       [v or 0 for v in values], width, label=name)
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cats))])
            ax.set_xticklabels(cats, fontsize=7,
                               rotation=30 if len(cats) > 4 else 0)
        for label, xs, ys, style in p.get('lines', ()):
            ax.plot(xs, ys, style, label=label)
        ax.set_title(p.get('title', ''), fontsize=9)
        ax.set_xlabel(p.get('xlabel', ''))
        ax.set_ylabel(p.get('ylabel', ''))
        if p.get('xscale') == 'log2':
            ax.set_xscale('log', base=2)
        if p.get('yscale') == 'log':
            ax.set_yscale('log')
        if p.get('hline') is not None:
            ax.axhline(p['hline'], color='k', lw=0.5)
        if p.get('legend', True) and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ['save_results', 'fmt', 'markdown_table', 'plot_panels']
