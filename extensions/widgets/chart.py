"""A dependency-free SVG line chart of loss and accuracy per round.

Plain SVG inside an ``ipywidgets.HTML`` renders the same in JupyterLab, classic notebooks
and Voila, needs no front-end extension, and can be checked by a headless browser
(``svg.fedhub-chart[data-rounds]``).
"""

from __future__ import annotations

import html
import math

W, H, PAD = 520, 220, 36


def _points(xs: list[int], ys: list[float], x_max: int, y_max: float) -> str:
    pts = []
    for x, y in zip(xs, ys, strict=False):
        if y is None or (isinstance(y, float) and math.isnan(y)):
            continue
        px = PAD + (W - 2 * PAD) * (x / max(x_max, 1))
        py = H - PAD - (H - 2 * PAD) * (y / y_max if y_max else 0)
        pts.append(f"{px:.1f},{py:.1f}")
    return " ".join(pts)


def render(history: list[dict], total_rounds: int, title: str = "") -> str:
    """The chart for ``history`` (a list of round records) as an SVG string."""
    xs = [int(r["round"]) for r in history]
    acc = [r.get("test_accuracy") for r in history]
    loss = [r.get("test_loss") for r in history]
    finite = [v for v in loss if isinstance(v, int | float) and math.isfinite(v)]
    loss_max = max(finite) * 1.1 if finite else 1.0
    x_max = max(total_rounds, max(xs) if xs else 1)
    last = history[-1] if history else {}
    legend = (
        f"accuracy {last.get('test_accuracy', 0):.3f} · loss {last.get('test_loss', 0):.3f}"
        if history
        else "waiting for the first round"
    )
    # the title is an experiment name (user input): escaped like every text node here
    return f"""
<svg class="fedhub-chart" data-rounds="{len(history)}" width="{W}" height="{H}"
     viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" style="font: 11px sans-serif">
  <rect x="0" y="0" width="{W}" height="{H}" fill="white"/>
  <text x="{PAD}" y="16" font-weight="bold">{html.escape(title)}</text>
  <text x="{W - PAD}" y="16" text-anchor="end">{html.escape(legend)}</text>
  <line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#888"/>
  <line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#888"/>
  <text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">1.0</text>
  <text x="{PAD - 4}" y="{H - PAD}" text-anchor="end">0</text>
  <text x="{W - PAD}" y="{H - PAD + 14}" text-anchor="end">round {x_max}</text>
  <text x="{W / 2}" y="{H - 8}" text-anchor="middle">round</text>
  <polyline class="fedhub-acc" fill="none" stroke="#1f77b4" stroke-width="2"
            points="{_points(xs, acc, x_max, 1.0)}"/>
  <polyline class="fedhub-loss" fill="none" stroke="#d62728" stroke-width="2"
            stroke-dasharray="4 2" points="{_points(xs, loss, x_max, loss_max)}"/>
  <text x="{W - PAD - 150}" y="{PAD + 4}" fill="#1f77b4">— test accuracy</text>
  <text x="{W - PAD - 150}" y="{PAD + 18}" fill="#d62728">- - test loss (scaled)</text>
</svg>"""
