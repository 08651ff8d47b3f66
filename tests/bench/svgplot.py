"""The rate/loss plot as a hand-written SVG (no plotting library).

Four panels from the throughput trials, upstream only: delivered rate against offered
rate (with the y = x line: everything carried) and loss against offered rate (with the
1 % line that decides a pass), for 100 B and 1200 B datagrams; one series per suite of
ours and one for the bare relays, every trial of every repetition a point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 1040, 730
COLORS = ["#222222", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
LOSS_TOP = 20.0  # % shown; higher losses are drawn at the top edge
PANEL_W, PANEL_H = 400, 230
LEFT, TOP, GAP_X, GAP_Y = 90, 90, 100, 90


def nice_step(span: float, ticks: int = 5) -> float:
    raw = max(span, 1e-9) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def rate_label(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


class Panel:
    def __init__(self, x0: float, y0: float, xmax: float, ymax: float) -> None:
        self.x0, self.y0, self.xmax, self.ymax = x0, y0, xmax, ymax

    def x(self, v: float) -> float:
        return self.x0 + PANEL_W * min(v, self.xmax) / self.xmax

    def y(self, v: float) -> float:
        return self.y0 + PANEL_H * (1 - min(v, self.ymax) / self.ymax)


def text(x: float, y: float, s: str, size: int = 12, anchor: str = "middle", **kw: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in kw.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{escape(s)}</text>"
    )


def axes(p: Panel, title: str, ylabel: str, yfmt: Any) -> list[str]:
    out = [
        f'<rect x="{p.x0}" y="{p.y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" '
        'stroke="#888"/>',
        text(p.x0 + PANEL_W / 2, p.y0 - 10, title, 14, font_weight="bold"),
        text(p.x0 + PANEL_W / 2, p.y0 + PANEL_H + 38, "offered rate (datagrams/s)"),
        text(
            p.x0 - 62,
            p.y0 + PANEL_H / 2,
            ylabel,
            transform=f"rotate(-90 {p.x0 - 62:.1f} {p.y0 + PANEL_H / 2:.1f})",
        ),
    ]
    step = nice_step(p.xmax)
    v = 0.0
    while v <= p.xmax + 1e-9:
        x = p.x(v)
        out.append(
            f'<line x1="{x:.1f}" y1="{p.y0}" x2="{x:.1f}" y2="{p.y0 + PANEL_H}" stroke="#eee"/>'
        )
        out.append(text(x, p.y0 + PANEL_H + 16, rate_label(v), 11))
        v += step
    step = nice_step(p.ymax)
    v = 0.0
    while v <= p.ymax + 1e-9:
        y = p.y(v)
        out.append(
            f'<line x1="{p.x0}" y1="{y:.1f}" x2="{p.x0 + PANEL_W}" y2="{y:.1f}" stroke="#eee"/>'
        )
        out.append(text(p.x0 - 6, y + 4, yfmt(v), 11, anchor="end"))
        v += step
    return out


def series(p: Panel, points: list[tuple[float, float, bool]], color: str) -> list[str]:
    """A line through the points in order of x; hollow markers where the flag is set."""
    if not points:
        return []
    points = sorted(points)
    path = " ".join(f"{p.x(x):.1f},{p.y(y):.1f}" for x, y, _ in points)
    out = [
        f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.2" '
        'stroke-opacity="0.6"/>'
    ]
    for x, y, hollow in points:
        fill = 'fill="white" stroke-width="1.2"' if hollow else f'fill="{color}" fill-opacity="0.8"'
        out.append(f'<circle cx="{p.x(x):.1f}" cy="{p.y(y):.1f}" r="3" stroke="{color}" {fill}/>')
    return out


def render(trials: Sequence[dict[str, Any]], configs: Sequence[tuple[str, str]], title: str) -> str:
    """``configs``: (key, label) of each series, in legend order."""
    up = [t for t in trials if t["direction"] == "up"]
    sizes = sorted({t["size"] for t in up}) or [100, 1200]
    colors = {key: COLORS[i % len(COLORS)] for i, (key, _) in enumerate(configs)}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        text(WIDTH / 2, 28, title, 16, font_weight="bold"),
    ]
    # legend
    x = LEFT
    for key, label in configs:
        out.append(f'<rect x="{x}" y="44" width="14" height="14" fill="{colors[key]}"/>')
        out.append(text(x + 20, 56, label, 12, anchor="start"))
        x += 40 + 7.5 * len(label)
    for col, size in enumerate(sizes[:2]):
        rows = [t for t in up if t["size"] == size]
        xmax = max([t["offered"] for t in rows] + [t["delivered"] for t in rows] + [1000.0])
        xmax = nice_step(xmax) * math.ceil(xmax / nice_step(xmax))
        x0 = LEFT + col * (PANEL_W + GAP_X)
        rate = Panel(x0, TOP, xmax, xmax)
        loss = Panel(x0, TOP + PANEL_H + GAP_Y, xmax, LOSS_TOP)
        out += axes(rate, f"{size} B upstream: delivered", "delivered (datagrams/s)", rate_label)
        out += axes(loss, f"{size} B upstream: loss", "loss (%)", lambda v: f"{v:g}")
        out.append(
            f'<line x1="{rate.x(0):.1f}" y1="{rate.y(0):.1f}" x2="{rate.x(xmax):.1f}" '
            f'y2="{rate.y(xmax):.1f}" stroke="#aaa" stroke-dasharray="4 4"/>'
        )
        out.append(
            f'<line x1="{loss.x0}" y1="{loss.y(1):.1f}" x2="{loss.x0 + PANEL_W}" '
            f'y2="{loss.y(1):.1f}" stroke="#d62728" stroke-dasharray="4 4"/>'
        )
        out.append(text(loss.x0 + PANEL_W - 4, loss.y(1) - 4, "1 %", 10, anchor="end"))
        for key, _ in configs:
            mine = [t for t in rows if t["config"] == key]
            short = [bool(t.get("sender_short")) for t in mine]
            delivered = [(t["offered"], t["delivered"]) for t in mine]
            lost = [(t["offered"], 100 * t["loss"]) for t in mine]
            out += series(
                rate, [(*xy, s) for xy, s in zip(delivered, short, strict=True)], colors[key]
            )
            out += series(loss, [(*xy, s) for xy, s in zip(lost, short, strict=True)], colors[key])
    out.append(
        text(
            WIDTH / 2,
            HEIGHT - 10,
            f"every trial of every repetition; hollow: the sender fell more than 3 % short of "
            f"the offered rate; losses above {LOSS_TOP:g} % are drawn at the top edge",
            11,
            fill="#555",
        )
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"
