"""fedhub: many organisations' data science on one JupyterHub.

The notebook-facing helpers (``fedhub.experiments``, ``fedhub.federations``,
``fedhub.datasets``, ``fedhub.marketplace``, ``fedhub.quota``) and the
federated-learning engine (``fedhub.fl``) are imported lazily, so that the hub,
the CLI and the services do not pay for torch or Dask at start-up.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "fl": "fedhub.fl",
    "experiments": "fedhub.client.experiments",
    "federations": "fedhub.client.federations",
    # the store package; it hands register/list/describe/delete to fedhub.client.datasets
    "datasets": "fedhub.datasets",
    "client": "fedhub.client",
    # the marketplace package; it hands search/publish/purchase/install/review to
    # fedhub.client.marketplace
    "marketplace": "fedhub.marketplace",
}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    if name == "quota":
        from fedhub.client import quota

        return quota
    raise AttributeError(f"module 'fedhub' has no attribute {name!r}")
