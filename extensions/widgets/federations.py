"""A live panel for one federation: status and progress, its members, the aggregate and
your tenant's own accuracy per round, and the ε budget when it uses differential privacy.

    fed = fedhub.federations.get("7c1e...")
    fed.watch()          # FederationMonitor(fed)

Like :class:`~fedhub.extensions.widgets.ExperimentMonitor` it needs only core ipywidgets
(the chart is inline SVG, so it renders the same in JupyterLab and Voila) and updates from a
background thread; the federation API has no event stream, so the thread polls the
federation, its rounds and your metrics every ``interval`` seconds until it has finished.
It makes no HTTP call of its own: everything comes through the client's ``Federation``.

Tenant names, dataset names, the federation's name and errors are typed by users of other
tenants: every one goes through ``html.escape``.
"""

from __future__ import annotations

import html
import math
import threading

from fedhub.client import FedhubAPIError
from fedhub.extras import needs_extra

with needs_extra("notebook", "fedhub's widgets"):
    import ipywidgets as widgets

__all__ = ["FederationMonitor", "render_rounds", "members_table", "epsilon_text"]

FINISHED = ("finished", "failed", "cancelled", "stopped_budget")
DRAFT_POLL_SECONDS = 10.0
_STATUS_COLOR = {"running": "#1f77b4", "finished": "#2ca02c", "stopped_budget": "#2ca02c",
                 "cancelled": "#ff7f0e", "failed": "#d62728"}  # fmt: skip
_BAR_STYLE = {"running": "info", "finished": "success", "stopped_budget": "success",
              "cancelled": "warning", "failed": "danger"}  # fmt: skip


def _num(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


#: the chart's size: the plot on the left (as wide as the experiment monitor's), the
#: legend on the right, so no line runs under its text
W, H, PAD, PLOT_W = 700, 240, 36, 480


def _points(xs: list[int], ys: list[float | None], x_max: int, y_max: float) -> str:
    pts = []
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            continue
        px = PAD + (PLOT_W - PAD) * (x / max(x_max, 1))
        py = H - PAD - (H - 2 * PAD) * (y / y_max if y_max else 0)
        pts.append(f"{px:.1f},{py:.1f}")
    return " ".join(pts)


def render_rounds(aggregate: list[dict], mine: list[dict], total_rounds: int,
                  title: str = "", local_only: float | None = None) -> str:  # fmt: skip
    """SVG chart: aggregate accuracy and loss (scaled) and your own accuracy per round.

    ``aggregate`` are the federation's round records (``round`` and ``aggregate``:
    ``accuracy``, ``loss``); ``mine`` your tenant's (``round``, ``accuracy``, ``loss``);
    ``local_only`` your local-only baseline's accuracy, drawn as a dotted level.
    """
    xs = [int(r["round"]) for r in aggregate]
    acc = [_num((r.get("aggregate") or {}).get("accuracy")) for r in aggregate]
    loss = [_num((r.get("aggregate") or {}).get("loss")) for r in aggregate]
    my_xs = [int(r["round"]) for r in mine]
    my_acc = [_num(r.get("accuracy")) for r in mine]
    finite = [v for v in loss if v is not None]
    loss_max = max(finite) * 1.1 if finite else 1.0
    x_max = max([total_rounds, *xs, *my_xs, 1])
    if aggregate:
        summary = f"round {xs[-1]}: accuracy {acc[-1] or 0:.3f}"
        if mine:
            summary += f" · yours {my_acc[-1] or 0:.3f}"
    else:
        summary = "waiting for the first round"
    local = ""
    if _num(local_only) is not None:
        summary += f" · yours, local-only {local_only:.3f}"
        y = H - PAD - (H - 2 * PAD) * float(local_only)
        local = (
            f'<line class="fedhub-local-only" x1="{PAD}" y1="{y:.1f}" x2="{PLOT_W}"'
            f' y2="{y:.1f}" stroke="#2ca02c" stroke-width="1.5" stroke-dasharray="1 3"/>'
            f'<text x="{PLOT_W + 16}" y="{PAD + 48}" fill="#2ca02c">··· yours, local-only</text>'
        )
    lx = PLOT_W + 16
    # the title is the federation's name (typed by the owner's admin): escaped
    return f"""
<svg class="fedhub-chart fedhub-federation-chart" data-rounds="{len(aggregate)}"
     data-my-rounds="{len(mine)}" width="{W}" height="{H}" viewBox="0 0 {W} {H}"
     xmlns="http://www.w3.org/2000/svg" style="font: 11px sans-serif">
  <rect x="0" y="0" width="{W}" height="{H}" fill="white"/>
  <text x="{PAD}" y="14" font-weight="bold">{html.escape(title)}</text>
  <text x="{PAD}" y="28">{html.escape(summary)}</text>
  <line x1="{PAD}" y1="{H - PAD}" x2="{PLOT_W}" y2="{H - PAD}" stroke="#888"/>
  <line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#888"/>
  <text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">1.0</text>
  <text x="{PAD - 4}" y="{H - PAD}" text-anchor="end">0</text>
  <text x="{PLOT_W}" y="{H - PAD + 14}" text-anchor="end">round {x_max}</text>
  <text x="{(PAD + PLOT_W) / 2}" y="{H - 8}" text-anchor="middle">round</text>
  <polyline class="fedhub-acc" fill="none" stroke="#1f77b4" stroke-width="2"
            points="{_points(xs, acc, x_max, 1.0)}"/>
  <polyline class="fedhub-loss" fill="none" stroke="#d62728" stroke-width="2"
            stroke-dasharray="4 2" points="{_points(xs, loss, x_max, loss_max)}"/>
  <polyline class="fedhub-my-acc" fill="none" stroke="#2ca02c" stroke-width="2"
            points="{_points(my_xs, my_acc, x_max, 1.0)}"/>
  <text x="{lx}" y="{PAD + 6}" fill="#1f77b4">— test accuracy, all members</text>
  <text x="{lx}" y="{PAD + 20}" fill="#2ca02c">— yours, on your own test data</text>
  <text x="{lx}" y="{PAD + 34}" fill="#d62728">- - test loss, all (scaled)</text>
  {local}
</svg>"""


_CELL = "padding:2px 16px 2px 0;text-align:left"


def members_table(members: list[dict], owner: str = "") -> str:
    """The members as an HTML table: tenant, state, and the dataset it bound. The service
    names a member's dataset to that member only; to the others, a joined member has one
    bound (joining is binding)."""

    def row(cells: list[str], tag: str = "td") -> str:
        return "".join(f"<{tag} style='{_CELL}'>{html.escape(c)}</{tag}>" for c in cells)

    rows = []
    for m in members:
        tenant = str(m.get("tenant", ""))
        joined = m.get("state") == "joined" or m.get("dataset_bound")
        bound = m.get("dataset") or ("yes" if joined else "—")
        role = " (owner)" if owner and tenant == owner else ""
        cells = [tenant + role, str(m.get("state", "")), str(bound)]
        rows.append(f"<tr data-tenant='{html.escape(tenant)}'>{row(cells)}</tr>")
    return (
        "<table class='fedhub-table fedhub-federation-members'>"
        f"<tr>{row(['tenant', 'state', 'dataset bound'], 'th')}</tr>{''.join(rows)}</table>"
    )


def _members_only(read, default=None):
    """``read()``, or ``default`` while the service has nothing for this tenant (results are
    for members; an invitee that has not joined is not one)."""
    try:
        return read()
    except FedhubAPIError as e:
        if e.status in (403, 404, 409):
            return default
        raise


def dp_settings(info: dict) -> dict | None:
    """The federation's DP settings (``None``: no differential privacy)."""
    return (info.get("privacy") or {}).get("dp") or None


def epsilon_spent(info: dict, rounds: list[dict]) -> float:
    """ε spent so far: the federation's own figure, else the newest round's."""
    if _num(info.get("epsilon")) is not None:
        return float(info["epsilon"])
    spent = [_num(r.get("epsilon")) for r in rounds]
    spent = [v for v in spent if v is not None]
    return spent[-1] if spent else 0.0


def epsilon_text(spent: float, budget: float, delta) -> str:
    return (
        f"ε {spent:.2f} of {budget:g} (δ = {delta:g})" if delta else f"ε {spent:.2f} of {budget:g}"
    )


class FederationMonitor(widgets.VBox):
    """Status and progress, the members table, the rounds chart and the ε budget bar."""

    def __init__(self, federation, *, follow: bool = True, interval: float = 2.0,
                 **kwargs) -> None:  # fmt: skip
        self.federation = federation
        self.interval = interval
        self.aggregate: list[dict] = []
        self.mine: list[dict] = []
        self.local_only: dict | None = None
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="rounds")
        self.status_label = widgets.HTML()
        self.members = widgets.HTML()
        self.chart = widgets.HTML()
        self.epsilon_bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, description="privacy budget",
            style={"description_width": "110px"}, layout={"width": "420px"},
        )  # fmt: skip
        self.epsilon_label = widgets.Label()
        self.epsilon_box = widgets.HBox([self.epsilon_bar, self.epsilon_label])
        self.epsilon_box.add_class("fedhub-epsilon-budget")
        header = widgets.HBox([self.progress, self.status_label])
        super().__init__([header, self.members, self.chart, self.epsilon_box], **kwargs)
        self.add_class("fedhub-federation-monitor")
        self._stop = threading.Event()
        self.refresh()
        self._thread = None
        if follow and not self.finished:
            self._thread = threading.Thread(target=self._follow, daemon=True)
            self._thread.start()

    @property
    def finished(self) -> bool:
        return self.federation.info.get("status") in FINISHED

    def refresh(self) -> None:
        """Read the federation, its rounds and your metrics again and redraw."""
        info = self.federation.refresh().info
        self.aggregate = _members_only(self.federation.round_records, [])
        self.mine = _members_only(self.federation.my_records, [])
        if info.get("status") in FINISHED:  # the baseline is trained after the last round
            self.local_only = _members_only(self.federation.local_only)
        self.show(info)

    def show(self, info: dict) -> None:
        status = str(info.get("status", ""))
        total = int(info.get("rounds") or (info.get("task") or {}).get("rounds") or 1)
        done = max([int(info.get("rounds_done") or 0), *(int(r["round"]) for r in self.aggregate)])
        self.progress.max = max(total, 1)
        self.progress.value = min(done, self.progress.max)
        self.progress.bar_style = _BAR_STYLE.get(status, "")
        color = _STATUS_COLOR.get(status, "#555")
        extra = ""
        if info.get("error"):
            extra += f" — {html.escape(str(info['error']))}"
        self.status_label.value = (
            f'<span class="fedhub-status" data-status="{html.escape(status)}"'
            f' style="color:{color}"><b>{html.escape(status)}</b> · round {done}/{total}'
            f" · federation <code>{html.escape(str(info.get('id', '')))}</code>"
            f" owned by <b>{html.escape(str(info.get('owner', '')))}</b>{extra}</span>"
        )
        self.members.value = members_table(info.get("members") or [], str(info.get("owner", "")))
        local = (self.local_only or {}).get("accuracy")
        self.chart.value = render_rounds(
            self.aggregate, self.mine, total, str(info.get("name", "")), local_only=local
        )
        dp = dp_settings(info)
        if dp and _num(dp.get("epsilon_budget")):
            budget = float(dp["epsilon_budget"])
            spent = epsilon_spent(info, self.aggregate)
            self.epsilon_bar.max = budget
            self.epsilon_bar.value = min(spent, budget)
            self.epsilon_bar.bar_style = "danger" if spent >= 0.9 * budget else "info"
            self.epsilon_label.value = epsilon_text(spent, budget, dp.get("delta"))
            self.epsilon_box.layout.display = None
        else:
            self.epsilon_box.layout.display = "none"

    def _pause(self) -> float:
        """Seconds to the next poll: ``interval`` while it runs; a draft waits for its
        members' answers, which take minutes, not seconds (at least 10 s)."""
        draft = self.federation.info.get("status") == "draft"
        return max(self.interval, DRAFT_POLL_SECONDS) if draft else self.interval

    def stop(self) -> None:
        """Stop following (the panel keeps what it shows)."""
        self._stop.set()

    def _follow(self) -> None:
        try:
            while not self._stop.wait(self._pause()):
                self.refresh()
                if self.finished:
                    return
        except Exception as e:  # shown in the widget, the kernel keeps running
            self.status_label.value = f"<b>monitor stopped</b>: {html.escape(str(e))}"
