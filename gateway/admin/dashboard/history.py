"""Equity and exposure over time: samples the running gateway keeps (a bounded ring, one every
few seconds), drawn as server-rendered SVG (no chart library, no script)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

MAX_SAMPLES = 2880  # a day at one sample each 30 s; more frequent sampling keeps a shorter window


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # unix seconds
    equity: Decimal
    exposure_pct: Decimal


class History:
    def __init__(self, max_samples: int = MAX_SAMPLES):
        self.samples: deque[Sample] = deque(maxlen=max_samples)

    def sample(self, equity: Decimal, committed: Decimal, at: float | None = None) -> None:
        exposure = committed / equity * 100 if equity > 0 else Decimal(0)
        self.samples.append(Sample(time.time() if at is None else at, equity, exposure))


def svg_chart(points: list[tuple[float, Decimal]], *, title: str, unit: str = "", width: int = 560, height: int = 160) -> str:
    """A line chart of (time, value). Axis labels are the min and max values and the time span."""
    pad = 36
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">'
        f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ccd"/>'
        f'<text x="8" y="14" font-size="12" font-family="sans-serif">{escape(title)}</text>'
    )
    if len(points) < 2:
        return head + f'<text x="{width // 2 - 60}" y="{height // 2}" font-size="12" fill="#888">not enough samples yet</text></svg>'
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    span_x = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return pad + (x - x0) / span_x * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad / 2 - (y - y0) / (y1 - y0) * (height - pad - 10)

    path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
    minutes = (x1 - x0) / 60
    return (
        head
        + f'<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="{path}"/>'
        + f'<text x="2" y="{py(y1) + 4:.1f}" font-size="10" font-family="sans-serif">{y1:.2f}{escape(unit)}</text>'
        + f'<text x="2" y="{py(y0):.1f}" font-size="10" font-family="sans-serif">{y0:.2f}{escape(unit)}</text>'
        + f'<text x="{width - 120}" y="{height - 4}" font-size="10" font-family="sans-serif">last {minutes:.1f} min</text>'
        + "</svg>"
    )


def equity_svg(history: History) -> str:
    return svg_chart([(s.at, s.equity) for s in history.samples], title="Equity")


def exposure_svg(history: History) -> str:
    return svg_chart([(s.at, s.exposure_pct) for s in history.samples], title="Exposure (% of equity)", unit="%")
