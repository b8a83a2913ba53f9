"""Submit, find, watch and collect federated experiments from a notebook.

exp = fedhub.experiments.submit(dataset="synthetic", strategy="fedprox", mu=1.0,
                                rounds=50, clients=30)
exp.watch()          # live widget
df, weights = exp.result()
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import FedhubAPIError, paged, request

__all__ = ["Experiment", "ExperimentResult", "submit", "list", "get"]

_builtin_list = list
FINISHED = ("completed", "failed", "cancelled")
SPEC_FIELDS = {
    "name", "dataset", "dataset_params", "partition", "partition_params", "model",
    "model_params", "strategy", "strategy_params", "rounds", "clients", "clients_per_round",
    "local_epochs", "batch_size", "lr", "stragglers", "straggler_policy", "seed",
    "algorithm", "environment", "agents", "init_weights",
}  # fmt: skip


@dataclass
class ExperimentResult:
    """Per-round metrics and the final weights (a torch state dict) of a finished run."""

    metrics: Any  # pandas.DataFrame
    weights: dict | None
    status: str

    def __iter__(self):  # df, weights = exp.result()
        return iter((self.metrics, self.weights))


class Experiment:
    """A handle on one experiment of the service; cheap to create, refreshes on demand."""

    def __init__(self, data: dict) -> None:
        self._data = data

    @property
    def id(self) -> str:
        return self._data["id"]

    @property
    def name(self) -> str:
        return self._data.get("name", "")

    @property
    def spec(self) -> dict:
        return self._data.get("spec", {})

    @property
    def rounds(self) -> int:
        return int(self._data.get("rounds", 0))

    def refresh(self) -> Experiment:
        self._data = request("GET", f"api/v1/experiments/{self.id}")
        return self

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``completed``, ``failed`` or ``cancelled`` (fetched now)."""
        return self.refresh()._data["status"]

    @property
    def info(self) -> dict:
        return dict(self._data)

    @property
    def metrics(self):
        """Per-round metrics so far, as a pandas DataFrame."""
        import pandas as pd

        self.refresh()
        return pd.DataFrame(self._data.get("metrics") or [])

    @property
    def agents(self):
        """A graph_td3 run's agent groups as of its last round (agent, district, last
        reward, episodes, health), as a pandas DataFrame; empty before the first round."""
        import pandas as pd

        found = request("GET", f"api/v1/experiments/{self.id}/agents")["agents"]
        return pd.DataFrame(found, columns=["agent", "district", "last_reward", "episodes",
                                            "health"])  # fmt: skip

    def cancel(self) -> Experiment:
        """Ask the service to stop the run; it stops after the round in progress."""
        self._data.update(request("POST", f"api/v1/experiments/{self.id}/cancel"))
        return self

    def stream(self, after: int = 0, timeout: float | None = None) -> Iterator[dict]:
        """Yield each round's metrics as the service reports it, until the run ends.

        Uses the service's server-sent events and reconnects (resuming after the last
        round received) if the connection drops, e.g. while the service restarts.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after
        while True:
            try:
                r = request(
                    "GET", f"api/v1/experiments/{self.id}/events", params={"after": last},
                    stream=True, timeout=(10, 60),
                )  # fmt: skip
                event = None
                for line in r.iter_lines(decode_unicode=True):
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"experiment {self.id} still running")
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line.split(":", 1)[1])
                        if event == "round":
                            last = int(data["round"])
                            yield data
                        elif event == "status":
                            self._data.update(data)
                            return
            except FedhubAPIError as e:
                if e.status not in (0, 502, 503):
                    raise
            except OSError:  # connection dropped (requests errors are OSErrors)
                pass
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"experiment {self.id} still running")
            time.sleep(1.0)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends; return its final status."""
        for _ in self.stream(after=self.rounds_done_hint(), timeout=timeout):
            pass
        return self.refresh()._data["status"]

    def rounds_done_hint(self) -> int:
        return int(self._data.get("rounds_done") or 0)

    def result(self, timeout: float | None = None) -> ExperimentResult:
        """Block until the run ends; return its metrics and final weights.

        A failed run raises :class:`FedhubAPIError` with the service's error message; a
        cancelled one returns the rounds it finished (and no weights).
        """
        import pandas as pd

        status = self.wait(timeout)
        if status == "failed":
            raise FedhubAPIError(500, "experiment_failed", self._data.get("error") or "failed")
        weights = None
        if status == "completed":
            import torch

            r = request("GET", f"api/v1/experiments/{self.id}/weights", raw=True)
            weights = torch.load(io.BytesIO(r.content), weights_only=True)
        return ExperimentResult(pd.DataFrame(self._data.get("metrics") or []), weights, status)

    def watch(self):
        """A live widget: progress, loss/accuracy chart, status and a cancel button."""
        from fedhub.extensions.widgets import ExperimentMonitor

        return ExperimentMonitor(self)

    def _repr_html_(self) -> str:
        d = self._data
        return (
            f"<b>experiment {d['id']}</b> — {d.get('name', '')}: {d['status']},"
            f" round {d.get('rounds_done', 0)}/{d.get('rounds', '?')}"
        )

    def __repr__(self) -> str:
        d = self._data
        return (
            f"<Experiment {d['id']} {d.get('name', '')!r} {d['status']}"
            f" {d.get('rounds_done', 0)}/{d.get('rounds', '?')} rounds>"
        )


def submit(spec: dict | None = None, **kwargs: Any) -> Experiment:
    """Submit an experiment; keyword arguments that are not spec fields are the
    strategy's parameters (``strategy="fedprox", mu=1.0``)."""
    body = dict(spec or {})
    strategy_params = dict(body.pop("strategy_params", {}) or {})
    for key, value in kwargs.items():
        if key in SPEC_FIELDS and key != "strategy_params":
            body[key] = value
        elif key == "strategy_params":
            strategy_params.update(value or {})
        else:
            strategy_params[key] = value
    if strategy_params:
        body["strategy_params"] = strategy_params
    return Experiment(request("POST", "api/v1/experiments", json=body))


def list(  # noqa: A001 - public name
    tenant: str | None = None, limit: int | None = 200
) -> _builtin_list[Experiment]:
    """Your tenant's experiments, newest first: the newest ``limit`` (None: all of them).

    The service pages its list (``?limit=&cursor=``); this follows the pages.
    """
    params = {"tenant": tenant} if tenant else None
    return [Experiment(d) for d in paged("api/v1/experiments", "experiments", limit, params)]


def get(exp_id: str) -> Experiment:
    """The experiment ``exp_id`` (404 → :class:`FedhubAPIError` if it is not yours)."""
    return Experiment(request("GET", f"api/v1/experiments/{exp_id}"))
