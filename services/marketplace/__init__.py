"""The marketplace service: publish, review, search, buy, use and rate assets, with
revenue shared through billing, at ``/services/marketplace/`` (docs/marketplace.md).

``fedhub up`` starts it (``service_spec``); ``python -m fedhub.services.marketplace``
runs it with the environment the hub gives a managed service.
"""

from __future__ import annotations


def service_spec(ctx) -> dict:
    from fedhub.service import managed_service

    return managed_service("marketplace", "fedhub.services.marketplace", ctx)
