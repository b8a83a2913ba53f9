"""Tenants' private datasets: the store (:mod:`.store`), conversion (:mod:`.convert`), and
in a notebook the client calls ``fedhub.datasets.register/list/describe/delete``
(:mod:`fedhub.client.datasets`, imported on first use).

See ``docs/datasets.md``.
"""

from __future__ import annotations

import importlib

from .store import (
    DatasetCorrupt,
    DatasetError,
    DatasetNotFound,
    DatasetRef,
    DatasetStore,
    Schema,
    load_arrays,
)

__all__ = [
    "DatasetCorrupt",
    "DatasetError",
    "DatasetNotFound",
    "DatasetRef",
    "DatasetStore",
    "Schema",
    "load_arrays",
    "register",
    "list",
    "describe",
    "delete",
]

_CLIENT = ("register", "list", "describe", "delete")


def __getattr__(name: str):
    # the notebook's calls: fedhub.datasets.register(...) whether ``fedhub.datasets``
    # resolved to this package or to fedhub.client.datasets
    if name in _CLIENT:
        return getattr(importlib.import_module("fedhub.client.datasets"), name)
    raise AttributeError(f"module 'fedhub.datasets' has no attribute {name!r}")
