"""Register, list, describe and delete your organisation's private datasets from a notebook.

    import fedhub
    ds = fedhub.datasets.register("churn", "data/churn.csv", label="churned",
                                  card="Customers of 2025, one row per account.")
    ds["ref"]                       # 'tenant/churn@1': use it as an experiment's dataset
    fedhub.datasets.list()
    fedhub.datasets.describe("churn")["card"]
    fedhub.datasets.delete("churn", version=1)

The source is read here, in your server, as you: a CSV, TSV, parquet or ``.npz`` file
(arrays ``x`` and ``y``), a pandas DataFrame, or a folder holding ``x.npy`` and ``y.npy``.
Only the converted arrays (features as float32, the label as class indices, a stratified
train/test split) are uploaded; the experiments service stores them in your tenant's
store, readable only by your tenant's own workers (``docs/datasets.md``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from . import request

__all__ = ["register", "list", "describe", "delete"]

_builtin_list = list


def register(
    name: str,
    source: Any,
    *,
    label: str = "label",
    features: _builtin_list[str] | None = None,
    card: str = "",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """Upload ``source`` as the next version of dataset ``name``; returns the version.

    ``label`` names the label column (for arrays: the label's name in the schema);
    ``features`` picks and orders the feature columns (default: all but the label);
    ``card`` is the data card's text (Markdown): what the data is, where it comes from,
    what it must not be used for. A source that cannot be used raises
    :class:`fedhub.datasets.DatasetError` naming the column or file at fault.
    """
    from fedhub.datasets.convert import npz_bytes, to_arrays
    from fedhub.datasets.store import check_name

    check_name(name)
    arrays, schema = to_arrays(
        source, label=label, features=features, test_fraction=test_fraction, seed=seed
    )
    body = npz_bytes(arrays)
    meta = {"schema": schema.to_dict(), "card": card, "sha256": hashlib.sha256(body).hexdigest()}
    header = base64.urlsafe_b64encode(json.dumps(meta).encode()).decode().rstrip("=")
    return request(
        "POST",
        f"api/v1/datasets/{name}",
        data=body,
        headers={"Content-Type": "application/octet-stream", "X-Fedhub-Dataset": header},
        timeout=300,
    )


def list(tenant: str | None = None) -> _builtin_list[dict]:  # noqa: A001 - fedhub.datasets.list()
    """Your tenant's datasets: ``[{"name", "versions", "latest": {...}}]``."""
    params = {"tenant": tenant} if tenant else None
    return request("GET", "api/v1/datasets", params=params)["datasets"]


def describe(name: str, version: int | None = None) -> dict:
    """A dataset's versions, and one version's (default: the latest) schema and card."""
    params = {"version": version} if version is not None else None
    return request("GET", f"api/v1/datasets/{name}", params=params)


def delete(name: str, version: int | None = None) -> _builtin_list[int]:
    """Delete one version, or every version (``version=None``); the versions deleted."""
    path = f"api/v1/datasets/{name}" + (f"/{int(version)}" if version is not None else "")
    return request("DELETE", path)["deleted"]
