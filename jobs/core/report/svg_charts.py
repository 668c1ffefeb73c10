"""Inline SVG charts for the run report: pure functions from numbers to markup, no library, no network.

The report must open anywhere (a laptop on a plane, an air-gapped cluster), so charts are
drawn here as SVG text rather than with a JavaScript charting library from a CDN. Each
point carries a `<title>`, which browsers show as a tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_W, _H = 640, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 30, 44

Series = tuple[str, Sequence[tuple[float, float]]]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^n steps)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def fmt(v: float) -> str:
    """Short number labels: 1.2k, 3.4M, 0.125."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def _frame(title: str, x_label: str, y_label: str, body: list[str], legend: list[tuple[str, str, bool]]) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{_W / 2}" y="18" text-anchor="middle" class="t">{escape(title)}</text>',
             f'<text x="{_W / 2}" y="{_H - 6}" text-anchor="middle" class="l">{escape(x_label)}</text>',
             f'<text x="14" y="{_H / 2}" text-anchor="middle" class="l" transform="rotate(-90 14 {_H / 2})">'
             f'{escape(y_label)}</text>', *body]
    x = _LEFT + 8
    for name, color, dashed in legend:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<line x1="{x}" y1="{_TOP + 6}" x2="{x + 16}" y2="{_TOP + 6}" stroke="{color}" '
                     f'stroke-width="2"{dash}/><text x="{x + 20}" y="{_TOP + 10}" class="k">{escape(name)}</text>')
        x += 28 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: Sequence[Series], title: str, x_label: str, y_label: str, *, step: bool = False,
               x_labels: dict[float, str] | None = None, y_range: tuple[float, float] | None = None,
               dashed: Sequence[str] = ()) -> str:
    """Lines (or steps) over a shared x axis; `x_labels` replaces numeric x ticks with named ones."""
    pts = [p for _, s in series for p in s]
    if not pts:
        return _frame(title, x_label, y_label, [f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" '
                                                f'class="l">no data</text>'], [])
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x_ticks = sorted(x_labels) if x_labels else nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(*(y_range or (min(0.0, min(ys)), max(ys))))
    x0, x1 = x_ticks[0], x_ticks[-1]
    y0, y1 = y_ticks[0], y_ticks[-1]
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1

    def px(x: float) -> float:
        return round(_LEFT + (x - x0) / (x1 - x0) * (_W - _LEFT - _RIGHT), 1)

    def py(y: float) -> float:
        return round(_H - _BOTTOM - (y - y0) / ((y1 - y0) or 1) * (_H - _TOP - _BOTTOM - 18), 1)

    body = []
    for t in y_ticks:
        body.append(f'<line x1="{_LEFT}" y1="{py(t)}" x2="{_W - _RIGHT}" y2="{py(t)}" class="g"/>'
                    f'<text x="{_LEFT - 6}" y="{py(t) + 4}" text-anchor="end" class="k">{fmt(t)}</text>')
    for t in x_ticks:
        label = x_labels[t] if x_labels else fmt(t)
        body.append(f'<text x="{px(t)}" y="{_H - _BOTTOM + 16}" text-anchor="middle" class="k">{escape(label)}</text>')
    body.append(f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}" class="a"/>')
    legend = []
    for i, (name, s) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        is_dashed = name in dashed
        legend.append((name, color, is_dashed))
        coords = []
        for j, (x, y) in enumerate(s):
            if step and j:
                coords.append(f"{px(x)},{py(s[j - 1][1])}")
            coords.append(f"{px(x)},{py(y)}")
        dash = ' stroke-dasharray="5 3"' if is_dashed else ""
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{" ".join(coords)}"/>')
        if len(s) <= 60:
            for x, y in s:
                xl = x_labels.get(x, fmt(x)) if x_labels else fmt(x)
                body.append(f'<circle cx="{px(x)}" cy="{py(y)}" r="3" fill="{color}"><title>{escape(name)}: '
                            f'{fmt(y)} at {escape(xl)}</title></circle>')
    return _frame(title, x_label, y_label, body, legend)


def bar_chart(items: Sequence[tuple[str, float]], title: str, value_label: str) -> str:
    """Horizontal bars, largest first."""
    items = sorted(items, key=lambda kv: -kv[1])
    if not items:
        return _frame(title, value_label, "", [f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="l">'
                                               f'none</text>'], [])
    top = max(v for _, v in items) or 1.0
    row = min(28.0, (_H - _TOP - _BOTTOM) / len(items))
    left = 170
    body = []
    for i, (label, v) in enumerate(items):
        y = _TOP + 8 + i * row
        w = (v / top) * (_W - left - 70)
        body.append(f'<text x="{left - 6}" y="{y + row * 0.6}" text-anchor="end" class="k">{escape(label)}</text>'
                    f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row * 0.7:.1f}" fill="{PALETTE[0]}">'
                    f'<title>{escape(label)}: {v:,.0f}</title></rect>'
                    f'<text x="{left + w + 4:.1f}" y="{y + row * 0.6}" class="k">{v:,.0f}</text>')
    return _frame(title, value_label, "", body, [])


def rates(points: Sequence[Sequence[float]], column: int, buckets: int = 100) -> list[tuple[float, float]]:
    """Per-second rate of a cumulative column of `[t, a, b, ...]` points, as a step series.

    Each step is the average rate between two kept points (at least 1/`buckets` of the run
    apart): writers report whole fragments, so finer steps would be bursts and zeros. The
    result `[(t0, r1), (t1, r2), ..., (tn, rn)]` is drawn with `line_chart(step=True)`."""
    if len(points) < 2:
        return []
    span = points[-1][0] - points[0][0]
    kept = [points[0]]
    for p in points[1:]:
        if p[0] - kept[-1][0] >= span / buckets or p is points[-1]:
            kept.append(p)
    out = []
    for a, b in zip(kept, kept[1:], strict=False):
        dt = b[0] - a[0]
        if dt > 0:
            out.append((a[0], (b[column] - a[column]) / dt))
    if out:
        out.append((kept[-1][0], out[-1][1]))
    return out
