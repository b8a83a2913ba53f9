"""A dependency-free SVG line chart per round: test accuracy and loss, or for a traffic-signal
(``graph_td3``) run, mean vehicle delay and queue length.

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


def _scaled_max(values: list) -> float:
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return max(finite) * 1.1 if finite and max(finite) > 0 else 1.0


def _series(history: list[dict]) -> tuple[list, float, str, list, str, str]:
    """(first series, its axis maximum, its label, second series (scaled), its label, legend)."""
    last = history[-1] if history else {}
    if any("mean_delay" in r for r in history):  # a traffic-signal run: lower is better
        delay = [r.get("mean_delay") for r in history]
        queue = [r.get("queue") for r in history]
        legend = (
            f"reward {last.get('reward', 0):.2f} · delay {last.get('mean_delay', 0):.1f} s"
            f" · queue {last.get('queue', 0):.1f}"
        )
        return delay, _scaled_max(delay), "mean delay (s)", queue, "queue (scaled)", legend
    acc = [r.get("test_accuracy") for r in history]
    loss = [r.get("test_loss") for r in history]
    legend = f"accuracy {last.get('test_accuracy', 0):.3f} · loss {last.get('test_loss', 0):.3f}"
    return acc, 1.0, "test accuracy", loss, "test loss (scaled)", legend


def render(history: list[dict], total_rounds: int, title: str = "") -> str:
    """The chart for ``history`` (a list of round records) as an SVG string."""
    xs = [int(r["round"]) for r in history]
    first, first_max, first_label, second, second_label, legend = _series(history)
    x_max = max(total_rounds, max(xs) if xs else 1)
    if not history:
        legend = "waiting for the first round"
    top = "1.0" if first_max == 1.0 else f"{first_max:.0f}"
    # the title is an experiment name (user input): escaped like every text node here
    return f"""
<svg class="fedhub-chart" data-rounds="{len(history)}" width="{W}" height="{H}"
     viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" style="font: 11px sans-serif">
  <rect x="0" y="0" width="{W}" height="{H}" fill="white"/>
  <text x="{PAD}" y="16" font-weight="bold">{html.escape(title)}</text>
  <text x="{W - PAD}" y="16" text-anchor="end">{html.escape(legend)}</text>
  <line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#888"/>
  <line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#888"/>
  <text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{top}</text>
  <text x="{PAD - 4}" y="{H - PAD}" text-anchor="end">0</text>
  <text x="{W - PAD}" y="{H - PAD + 14}" text-anchor="end">round {x_max}</text>
  <text x="{W / 2}" y="{H - 8}" text-anchor="middle">round</text>
  <polyline class="fedhub-acc" fill="none" stroke="#1f77b4" stroke-width="2"
            points="{_points(xs, first, x_max, first_max)}"/>
  <polyline class="fedhub-loss" fill="none" stroke="#d62728" stroke-width="2"
            stroke-dasharray="4 2" points="{_points(xs, second, x_max, _scaled_max(second))}"/>
  <text x="{W - PAD - 150}" y="{PAD + 4}" fill="#1f77b4">— {first_label}</text>
  <text x="{W - PAD - 150}" y="{PAD + 18}" fill="#d62728">- - {second_label}</text>
</svg>"""
