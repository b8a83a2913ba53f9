"""The billing service: usage, invoices (JSON, HTML, PDF), per-user costs, budgets,
and the external events API, at ``/services/billing/``.

``fedhub up`` starts it (``service_spec``); ``python -m fedhub.services.billing``
runs it with the environment the hub gives a managed service.
"""

from __future__ import annotations


def service_spec(ctx) -> dict:
    import os

    from fedhub.service import managed_service

    # operator settings (FEDHUB_BILLING_GRACE_DAYS, ...) reach the service from the hub's env
    # and where homes live, for the storage sample (fedhub.storage)
    extra = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("FEDHUB_BILLING_") or k == "FEDHUB_STORAGE_PATH_TEMPLATE"
    }
    return managed_service("billing", "fedhub.services.billing", ctx, extra_env=extra)
