"""A small line chart as inline SVG (no chart library, no network): the metrics trend plot.

``line_chart({"USD": [(date, value), ...], "EUR": [...]}, title="MRR")`` returns markup safe to
put in a page: every text in it (title, series names, tooltips) is escaped here.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from typing import Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = ("#017cee", "#e8710a", "#0d904f", "#c5221f", "#8430ce", "#5f6368")
Series = Mapping[str, Sequence[tuple[date, Decimal | float | int]]]


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step)
    ticks = [round((first + i) * step, 10) for i in range(count + 3)]
    return ticks[: next(i for i, t in enumerate(ticks) if t >= hi) + 1]


def _fmt(v: float) -> str:
    if abs(v) >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.2f}"


def line_chart(series: Series, *, title: str, width: int = 720, height: int = 240, unit: str = "") -> Markup:
    """One line per series over dates; empty series give an "no data yet" panel."""
    points = [(d, float(v)) for s in series.values() for d, v in s]
    pad_l, pad_r, pad_t, pad_b = 64, 16, 28, 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" aria-label="{escape(title)}">',
           f'<text x="{pad_l}" y="18" class="chart-title">{escape(title)}</text>']
    if not points:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">no data yet</text></svg>')
        return Markup("".join(out))
    d0 = min(d for d, _ in points).toordinal()
    d1 = max(d for d, _ in points).toordinal()
    ticks = nice_ticks(min(0.0, min(v for _, v in points)), max(v for _, v in points))
    y_lo, y_hi = ticks[0], ticks[-1]
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(d: date) -> float:
        return pad_l + (plot_w * (d.toordinal() - d0) / (d1 - d0) if d1 > d0 else plot_w / 2)

    def y(v: float) -> float:
        return pad_t + plot_h - plot_h * (v - y_lo) / (y_hi - y_lo)

    for t in ticks:
        out.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>'
                   f'<text x="{pad_l - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">{escape(_fmt(t))}</text>')
    ticks_x = _date_ticks(d0, d1)
    for i, d in enumerate(ticks_x):
        anchor = "start" if i == 0 and len(ticks_x) > 1 else "end" if i == len(ticks_x) - 1 and i else "middle"
        out.append(f'<text x="{x(d):.1f}" y="{height - pad_b + 18}" text-anchor="{anchor}" class="tick">{d.isoformat()}</text>')
    for i, (name, data) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        pts = sorted((d, float(v)) for d, v in data)
        if not pts:
            continue
        path = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in pts)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}" class="series" data-series="{escape(name)}"/>')
        for d, v in pts if len(pts) <= 120 else ():
            out.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                       f'<title>{escape(name)} {d.isoformat()}: {escape(f"{v:,.2f}")}{escape(unit)}</title></circle>')
        lx = pad_l + 8 + i * 90
        out.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="{height - 5}" class="legend">{escape(name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _date_ticks(d0: int, d1: int, count: int = 4) -> list[date]:
    if d1 == d0:
        return [date.fromordinal(d0)]
    return [date.fromordinal(round(d0 + (d1 - d0) * i / count)) for i in range(count + 1)]
