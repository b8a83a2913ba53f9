"""The audit service: ingests the event spool into the chains and serves the log.

``fedhub up`` runs it as a managed JupyterHub service at ``/services/audit/``
(HubOAuth). It also adds a hub-side hook (``extra_config``) that records the
events only the hub sees: logout, API token creation and revocation, and
state-changing hub API calls and their refusals.
"""

from __future__ import annotations


def service_spec(ctx) -> dict:
    from fedhub.service import managed_service

    spec = managed_service("audit", "fedhub.services.audit", ctx)
    spec["display"] = False
    return spec
