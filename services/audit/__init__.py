"""The audit service: ingests the event spool into the chains and serves the log.

``fedhub up`` runs it as a managed JupyterHub service at ``/services/audit/``
(HubOAuth). It also adds a hub-side hook (``extra_config``) that records the
events only the hub sees: logout, API token creation and revocation, and
state-changing hub API calls and their refusals.
"""

from __future__ import annotations


def service_spec(ctx) -> dict:
    from fedhub.web import managed_service

    spec = managed_service("audit", "fedhub.services.audit", ctx)
    spec["display"] = False
    return spec


def extra_config(ctx, c) -> None:
    from fedhub.audit.hub_hooks import log_request

    # JupyterHub's own request logger, plus audit events for what only the hub sees
    c.JupyterHub.tornado_settings.update({"log_function": log_request})
