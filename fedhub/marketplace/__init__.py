"""The marketplace: algorithms, models, datasets and notebooks that tenants publish, buy,
rate and use, with the licence checked at every use and revenue shared through billing.

The logic is :mod:`fedhub.marketplace.store` (its methods in :mod:`.catalogue`,
:mod:`.purchases` and :mod:`.reviews`; models in :mod:`.models`, search in :mod:`.fulltext`,
the review workflow in :mod:`.workflow`); the service is
``fedhub.services.marketplace``. In a notebook, this module is the client:

    import fedhub
    fedhub.marketplace.search("fedprox")
    fedhub.marketplace.purchase("fedprox-variant")
"""

from __future__ import annotations

import importlib

_CLIENT = ("search", "asset", "publish", "purchase", "entitlements", "install", "review")


def __getattr__(name: str):
    if name in _CLIENT:
        return getattr(importlib.import_module("fedhub.client.marketplace"), name)
    raise AttributeError(f"module 'fedhub.marketplace' has no attribute {name!r}")
