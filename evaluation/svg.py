"""Two small charts as standalone SVG, so the report needs no plotting library."""

from __future__ import annotations

from html import escape

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")
FONT = 'font-family="sans-serif" font-size="11"'


def _legend(labels: list[str], x: float, y: float) -> list[str]:
    parts = []
    for i, label in enumerate(labels):
        parts.append(f'<rect x="{x}" y="{y + 16 * i}" width="10" height="10" fill="{COLORS[i % len(COLORS)]}"/>')
        parts.append(f'<text x="{x + 14}" y="{y + 16 * i + 9}" {FONT}>{escape(label)}</text>')
    return parts


def _svg(width: float, height: float, parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}"><rect width="100%" height="100%" fill="white"/>'
            + "".join(parts) + "</svg>\n")


def _title_and_percent_grid(title: str, left: float, top: float, plot_w: float, plot_h: float) -> list[str]:
    """The chart's title and horizontal grid lines at 0, 25, ..., 100% of the plot height."""
    parts = [f'<text x="{left}" y="18" {FONT} font-weight="bold">{escape(title)}</text>']
    for tick in range(0, 101, 25):
        y = top + plot_h * (1 - tick / 100)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" {FONT}>{tick}%</text>')
    return parts


def bar_chart(title: str, groups: list[str], series: dict[str, list[float | None]]) -> str:
    """Grouped bars, one group per category, one bar per run; values are shares in 0–1."""
    labels = list(series)
    bar, gap, left, top, plot_h = 14, 18, 45, 30, 220
    group_w = bar * max(1, len(labels)) + gap
    plot_w = group_w * max(1, len(groups))
    legend_w = 12 + 7 * max((len(s) for s in labels), default=0)
    parts = _title_and_percent_grid(title, left, top, plot_w, plot_h)
    for g, group in enumerate(groups):
        x0 = left + g * group_w + gap / 2
        for s, label in enumerate(labels):
            value = series[label][g]
            if value is None:
                continue
            h = plot_h * value
            parts.append(f'<rect x="{x0 + s * bar}" y="{top + plot_h - h:.1f}" width="{bar - 2}" height="{h:.1f}" '
                         f'fill="{COLORS[s % len(COLORS)]}"><title>{escape(label)} {escape(group)}: '
                         f'{value:.0%}</title></rect>')
        cx = x0 + bar * len(labels) / 2
        parts.append(f'<text transform="translate({cx},{top + plot_h + 10}) rotate(30)" {FONT}>{escape(group)}</text>')
    parts += _legend(labels, left + plot_w + 15, top)
    return _svg(left + plot_w + 30 + legend_w, top + plot_h + 110, parts)


def cdf_chart(title: str, series: dict[str, list[float]], unit: str = "s") -> str:
    """Empirical CDF of latencies, one line per run."""
    labels = list(series)
    left, top, plot_w, plot_h = 50, 30, 420, 220
    high = max((max(v) for v in series.values() if v), default=1.0) or 1.0
    legend_w = 12 + 7 * max((len(s) for s in labels), default=0)
    parts = _title_and_percent_grid(title, left, top, plot_w, plot_h)
    for i in range(5):
        value = high * i / 4
        x = left + plot_w * i / 4
        parts.append(f'<text x="{x}" y="{top + plot_h + 15}" text-anchor="middle" {FONT}>{value:.2f}{unit}</text>')
    for s, label in enumerate(labels):
        values = sorted(series[label])
        if not values:
            continue
        points = [f"{left},{top + plot_h}"]
        for k, value in enumerate(values, 1):
            x = left + plot_w * value / high
            points.append(f"{x:.1f},{top + plot_h * (1 - (k - 1) / len(values)):.1f}")
            points.append(f"{x:.1f},{top + plot_h * (1 - k / len(values)):.1f}")
        parts.append(f'<polyline fill="none" stroke="{COLORS[s % len(COLORS)]}" stroke-width="2" '
                     f'points="{" ".join(points)}"/>')
    parts += _legend(labels, left + plot_w + 15, top)
    return _svg(left + plot_w + 30 + legend_w, top + plot_h + 30, parts)
