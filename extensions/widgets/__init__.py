"""ipywidgets for fedhub: a live experiment monitor and a quota/usage panel.

Both work in JupyterLab and in Voila (only core ipywidgets, the chart is inline SVG).
Updates come from a background thread reading the service's event stream; ipykernel
sends widget updates from any thread.

Every string that reaches an ``ipywidgets.HTML`` value (experiment names and ids,
errors, tenant and tier names, the chart's SVG text) goes through ``html.escape``:
names are typed by any member of a tenant and shown to its admins and to platform admins.

    from fedhub.extensions.widgets import ExperimentMonitor, QuotaPanel
    ExperimentMonitor(fedhub.experiments.get("3f2a..."))
    QuotaPanel()
"""

from __future__ import annotations

import html
import threading

from fedhub.extras import needs_extra

from .chart import render

with needs_extra("notebook", "fedhub's widgets"):
    import ipywidgets as widgets

__all__ = ["ExperimentMonitor", "QuotaPanel"]

_STATUS_STYLE = {
    "queued": ("info", "#555"),
    "running": ("info", "#1f77b4"),
    "completed": ("success", "#2ca02c"),
    "cancelled": ("warning", "#ff7f0e"),
    "failed": ("danger", "#d62728"),
}


class ExperimentMonitor(widgets.VBox):
    """Progress bar, live loss/accuracy chart, status line and a cancel button."""

    def __init__(self, experiment, *, follow: bool = True, **kwargs) -> None:
        self.experiment = experiment
        info = experiment.refresh().info
        self.history: list[dict] = list(info.get("metrics") or [])
        self.total = int(info.get("rounds") or 1)
        self.progress = widgets.IntProgress(
            value=len(self.history), min=0, max=self.total, description="rounds"
        )
        self.status_label = widgets.HTML()
        self.chart = widgets.HTML(render(self.history, self.total, info.get("name", "")))
        self.cancel_button = widgets.Button(
            description="Cancel", button_style="danger", icon="stop", tooltip="Stop the run"
        )
        self.cancel_button.on_click(self._on_cancel)
        header = widgets.HBox([self.progress, self.status_label, self.cancel_button])
        super().__init__([header, self.chart], **kwargs)
        self.add_class("fedhub-experiment-monitor")
        self._show_status(info)
        self._thread = None
        if follow and info["status"] not in ("completed", "failed", "cancelled"):
            self._thread = threading.Thread(target=self._follow, daemon=True)
            self._thread.start()

    def _show_status(self, info: dict) -> None:
        style, color = _STATUS_STYLE.get(info["status"], ("info", "#555"))
        status = html.escape(str(info["status"]))
        self.progress.bar_style = style
        done = max(len(self.history), int(info.get("rounds_done") or 0))
        self.progress.value = min(done, self.total)
        error = f" — {html.escape(str(info['error']))}" if info.get("error") else ""
        self.status_label.value = (
            f'<span class="fedhub-status" data-status="{status}" style="color:{color}">'
            f"<b>{status}</b> · round {done}/{self.total}"
            f" · experiment <code>{html.escape(str(info['id']))}</code>{error}</span>"
        )
        finished = status in ("completed", "failed", "cancelled")
        self.cancel_button.disabled = finished or bool(info.get("cancel_requested"))

    def update(self, record: dict) -> None:
        """Add one round to the chart (called for each streamed round)."""
        self.history.append(record)
        self.chart.value = render(self.history, self.total, self.experiment.name)
        info = dict(self.experiment.info)
        info["status"] = "running" if info["status"] == "queued" else info["status"]
        info["rounds_done"] = record["round"]
        self._show_status(info)

    def _follow(self) -> None:
        after = int(self.history[-1]["round"]) if self.history else 0
        try:
            for record in self.experiment.stream(after=after):
                self.update(record)
            self._show_status(self.experiment.refresh().info)
        except Exception as e:  # shown in the widget, the kernel keeps running
            self.status_label.value = f"<b>monitor stopped</b>: {html.escape(str(e))}"

    def _on_cancel(self, _button) -> None:
        self.cancel_button.disabled = True
        try:
            self._show_status(self.experiment.cancel().info)
        except Exception as e:
            self.status_label.value = f"<b>cancel failed</b>: {html.escape(str(e))}"


class QuotaPanel(widgets.VBox):
    """The tenant's tier limits with how much of each is used.

    The rows are the ``meters`` of the experiments service's ``/quota`` answer, one per
    metered limit of :mod:`fedhub.limits` (compute, storage, API calls, experiments,
    client-hours), plus the experiments queued or running; a limit the registry marks
    as not enforced says so. An older service without ``meters``: the :data:`ROWS`.
    """

    ROWS = [
        ("experiments_per_month", "experiments_this_month", "Experiments this month"),
        ("max_concurrent_experiments", "concurrent_experiments", "Queued or running"),
        (
            "federated_client_hours_per_month",
            "federated_client_hours_this_month",
            "Federated client-hours this month",
        ),
    ]

    def __init__(self, data: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_class("fedhub-quota-panel")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.refresh(data)

    def refresh(self, data: dict | None = None) -> None:
        if data is None:
            from fedhub.client import quota

            data = quota()
        self.data = data
        limits, usage = data["limits"], data["usage"]
        title = widgets.HTML(
            f"<b>{html.escape(str(data['tenant']))}</b> · tier"
            f" <b>{html.escape(str(data.get('tier_display_name') or data['tier']))}</b>"
            f" · up to {html.escape(str(limits['max_clients_per_experiment']))}"
            " clients per experiment"
        )
        rows = [widgets.HBox([title, self.refresh_button])]
        if "meters" in data:
            shown = [
                (m["allowed"], m["used"], self._label(m), m.get("enforced", True))
                for m in data["meters"]
            ]
            shown.append(
                (
                    limits["max_concurrent_experiments"],
                    usage["concurrent_experiments"],
                    "Experiments queued or running",
                    True,
                )
            )
        else:
            shown = [(limits[k], usage[u], label, True) for k, u, label in self.ROWS]
        for limit, used, label, enforced in shown:
            bar = widgets.FloatProgress(
                value=min(float(used), float(limit) or 1.0),
                min=0.0,
                max=float(limit) or 1.0,
                description=label,
                style={"description_width": "240px"},
                layout={"width": "520px"},
                bar_style="danger" if limit and used >= limit else "info",
            )
            text = f"{used:.2f}".rstrip("0").rstrip(".") if isinstance(used, float) else used
            note = "" if enforced else " (not enforced yet)"
            rows.append(widgets.HBox([bar, widgets.Label(f"{text} / {limit:g}{note}")]))
        self.children = rows

    @staticmethod
    def _label(meter: dict) -> str:
        window = meter.get("window")
        per = f" this {window}" if window in ("month", "day", "hour") else ""
        return f"{meter['description']}{per} ({meter['unit']})"
