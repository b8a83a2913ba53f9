"""Federations across tenants from a notebook: several organisations train one model, each
one's private data staying on workers that run as that organisation's account.

Acme's tenant admin creates it and invites globex::

    fed = fedhub.federations.create("churn", dataset="churn@1", model="mlp", rounds=20,
                                    dp={"noise_multiplier": 1.0, "clip_norm": 1.0,
                                        "delta": 1e-5, "epsilon_budget": 8.0})
    fed.invite("globex")

Globex's tenant admin binds one of globex's datasets (or declines)::

    fedhub.federations.join(fed_id, dataset="churn-eu")

Acme's admin starts it; every member can watch it and collect the results::

    fed.run()
    fed.watch()          # live widget: progress, members, accuracy per round, ε budget
    fed.rounds()         # aggregate accuracy, loss and ε per round (every member sees these)
    fed.my_metrics()     # your tenant's own evaluation per round (no other tenant sees it)
    fed.local_only()     # with compare_local_only=True: your data alone, for comparison
    fed.model()          # the final global weights (every member gets them)

A federation you are not part of answers 404, as one that does not exist. A dataset is
named ``name``, ``name@version`` or ``tenant/name@version`` (always your own tenant's).
"""

from __future__ import annotations

import io
import time
from typing import Any

from . import FedhubAPIError, paged, request

__all__ = ["Federation", "create", "join", "decline", "list", "get"]

_builtin_list = list
#: final states (``stopped_budget``: the next round would have spent more ε than the budget)
FINISHED = ("finished", "failed", "cancelled", "stopped_budget")
TASK_FIELDS = ("model", "model_params", "strategy", "strategy_params", "rounds", "local_epochs",
               "batch_size", "lr", "seed", "compare_local_only")  # fmt: skip


def dataset_ref(dataset: Any) -> str:
    """``"tenant/<name>@<version>"`` for a name, ``name@version``, a full reference or what
    :func:`fedhub.datasets.register` returned (a dict with its ``ref``)."""
    if isinstance(dataset, dict):
        dataset = dataset.get("ref") or dataset.get("name") or ""
    ref = str(dataset).strip()
    if not ref:
        raise ValueError("dataset: give the name of one of your tenant's datasets")
    return ref if ref.startswith("tenant/") else f"tenant/{ref}"


class Federation:
    """A handle on one federation; cheap to create, refreshes on demand."""

    def __init__(self, data: dict) -> None:
        self._data = data

    @property
    def id(self) -> str:
        return str(self._data["id"])

    @property
    def name(self) -> str:
        return self._data.get("name", "")

    @property
    def owner(self) -> str:
        """The tenant that created the federation."""
        return self._data.get("owner", "")

    @property
    def info(self) -> dict:
        return dict(self._data)

    @property
    def members(self) -> _builtin_list[dict]:
        """Every tenant asked so far: ``tenant``, ``member_id``, ``state`` (``invited``,
        ``joined`` with a dataset bound, ``declined``); ``dataset`` is there for your own
        tenant only."""
        return _builtin_list(self._data.get("members") or [])

    @property
    def status(self) -> str:
        """The federation's state, fetched now: ``draft`` (inviting), ``running``, then
        ``finished``, ``failed``, ``cancelled`` or ``stopped_budget``."""
        return self.refresh()._data["status"]

    def refresh(self) -> Federation:
        self._data = request("GET", f"api/v1/federations/{self.id}")
        return self

    def _post(self, action: str, body: dict | None = None) -> Federation:
        # every action answers with the federation as it is afterwards
        self._data = request("POST", f"api/v1/federations/{self.id}/{action}", json=body or {})
        return self

    def invite(self, tenant: str) -> Federation:
        """Invite another tenant (by its slug); its admins can then join or decline."""
        return self._post("invitations", {"tenant": tenant})

    def join(self, dataset: Any) -> Federation:
        """Accept the invitation for your tenant, binding one of its datasets."""
        return self._post("join", {"dataset": dataset_ref(dataset)})

    def decline(self) -> Federation:
        return self._post("decline")

    def run(self) -> Federation:
        """Start training (the owner's admins; at least 2 members joined). Invitations not
        answered by then lapse: a running federation takes no more members."""
        return self._post("run")

    def cancel(self) -> Federation:
        """Stop after the round in progress (the admins of any member that joined); a draft
        is cancelled at once."""
        return self._post("cancel")

    def round_records(self) -> _builtin_list[dict]:
        """The rounds so far as the service sends them: ``round``, ``members``, ``dropped``,
        ``epsilon`` and ``aggregate`` (``accuracy``, ``loss``, ``examples``)."""
        return request("GET", f"api/v1/federations/{self.id}/rounds")["rounds"]

    def my_records(self) -> _builtin_list[dict]:
        """Your tenant's own evaluation per round (``round``, ``accuracy``, ``loss``,
        ``client_seconds``, ``examples``); no other tenant can read these."""
        return request("GET", f"api/v1/federations/{self.id}/metrics")["rounds"]

    def local_only(self) -> dict | None:
        """Your tenant's local-only baseline (``accuracy``, ``loss``): the same model trained
        on your data alone for the same rounds × epochs, evaluated on your test split.
        There once the federation has finished, when it was created with
        ``compare_local_only=True``; else None."""
        return request("GET", f"api/v1/federations/{self.id}/metrics").get("local_only")

    def rounds(self):
        """Aggregate metrics per round as a pandas DataFrame (one column per metric)."""
        import pandas as pd

        rows = []
        for r in self.round_records():
            row = {k: v for k, v in r.items() if k not in ("aggregate", "per_member")}
            row.update(r.get("aggregate") or {})
            rows.append(row)
        return pd.DataFrame(rows)

    def my_metrics(self):
        """Your tenant's evaluation on its own test data per round, as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.my_records())

    def wait(self, timeout: float | None = None, interval: float = 2.0) -> str:
        """Block until the federation has finished; return its final status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.status) not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"federation {self.id} still {status}")
            time.sleep(interval)
        return status

    def model(self) -> Any:
        """The final global model's weights (a NumPy vector; a dict of arrays if the service
        sends several). Members only, once the federation has ended with a model."""
        import numpy as np

        r = request("GET", f"api/v1/federations/{self.id}/model", raw=True)
        try:
            with np.load(io.BytesIO(r.content), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as e:
            raise FedhubAPIError(r.status_code, "bad_model", f"unreadable model: {e}") from None
        return arrays["weights"] if set(arrays) == {"weights"} else arrays

    def watch(self, interval: float = 2.0):
        """A live widget: status and progress, the members, aggregate and your own accuracy
        per round, and the ε budget when the federation uses differential privacy."""
        from fedhub.extensions.widgets.federations import FederationMonitor

        return FederationMonitor(self, interval=interval)

    def _repr_html_(self) -> str:
        import html

        d = self._data
        return (
            f"<b>federation {html.escape(self.id)}</b> — {html.escape(self.name)}:"
            f" {html.escape(str(d.get('status')))}, round {d.get('rounds_done', 0)}/"
            f"{(d.get('task') or {}).get('rounds', '?')}, {len(self.members)} members"
        )

    def __repr__(self) -> str:
        d = self._data
        return (
            f"<Federation {self.id} {self.name!r} {d.get('status')} owner={self.owner}"
            f" members={[m.get('tenant') for m in self.members]}>"
        )


def create(
    name: str,
    *,
    dataset: Any,
    model: str = "mlp",
    rounds: int = 10,
    secure_aggregation: bool = True,
    secagg_threshold: int | None = None,
    dp: dict | None = None,
    schema: dict | None = None,
    invite: _builtin_list[str] | tuple[str, ...] = (),
    **task: Any,
) -> Federation:
    """Create a federation owned by your tenant (tenant admins), with ``dataset`` as your
    tenant's data, and invite the tenants in ``invite``.

    Other keyword arguments are the task's (``model_params``, ``strategy``,
    ``strategy_params``, ``local_epochs``, ``batch_size``, ``lr``, ``seed``, and
    ``compare_local_only=True`` to also train each member on its own data alone after the
    run, for :meth:`Federation.local_only`). ``secagg_threshold``: how many members must
    answer each secure-aggregation stage (default ⌈2n/3⌉, at least 2). ``dp``:
    ``{"noise_multiplier", "clip_norm", "delta", "epsilon_budget"}`` turns on client-level
    differential privacy. ``schema`` (features and label) is what members' data must match;
    by default the service takes your dataset's.
    """
    unknown = sorted(set(task) - set(TASK_FIELDS))
    if unknown:
        raise TypeError(f"create() got unknown task fields {unknown}; known: {TASK_FIELDS}")
    body: dict[str, Any] = {
        "name": name,
        "dataset": dataset_ref(dataset),
        "task": {"model": model, "rounds": rounds, **task},
        "privacy": {"secure_aggregation": secure_aggregation, "dp": dp},
    }
    if secagg_threshold is not None:
        body["privacy"]["secagg_threshold"] = secagg_threshold
    if schema is not None:
        body["schema"] = schema
    fed = Federation(request("POST", "api/v1/federations", json=body))
    for tenant in invite:
        fed.invite(tenant)
    return fed


def join(fed_id: str, dataset: Any) -> Federation:
    """Join federation ``fed_id`` (your tenant was invited), binding one of its datasets."""
    return Federation({"id": fed_id}).join(dataset)


def decline(fed_id: str) -> Federation:
    """Decline the invitation of your tenant to federation ``fed_id``."""
    return Federation({"id": fed_id}).decline()


def list(limit: int | None = 200) -> _builtin_list[Federation]:  # noqa: A001 - public name
    """The federations your tenant owns, is a member of or is invited to, newest first."""
    return [Federation(d) for d in paged("api/v1/federations", "federations", limit)]


def get(fed_id: str) -> Federation:
    """Federation ``fed_id`` (404 → :class:`FedhubAPIError` if your tenant is not in it)."""
    return Federation(request("GET", f"api/v1/federations/{fed_id}"))
