"""Dask Gateway as a part of fedhub: per-user Dask clusters behind the hub's login.

``fedhub up --gateway`` (or ``c.GatewaySettings.enabled = True``) runs dask-gateway-server
as the managed hub service ``dask-gateway`` (:mod:`fedhub.gateway.app`); its backend
(:mod:`fedhub.gateway.backend`) starts each cluster as its owner's Unix account, limits it
by the tenant's tier (:mod:`fedhub.gateway.limits`) and meters its workers
(:mod:`fedhub.gateway.meter`). Every user server gets the environment that makes
``dask_gateway.Gateway()`` work with no arguments (:func:`client_environment`).

This module stays light (no dask-gateway import): the launcher reads it on every start.
See docs/gateway.md.
"""

from __future__ import annotations

from traitlets import Bool
from traitlets.config import LoggingConfigurable

SERVICE_NAME = "dask-gateway"
#: the hub services that run clusters for tenants (``c.FedhubBackend.tenant_services``) may
#: call the gateway: its JupyterHub authenticator accepts only tokens with this scope
SERVICES_ROLE = {
    "name": "dask-gateway-tenant-services",
    "description": "services that run Dask Gateway clusters for tenants (experiments)",
    "scopes": [f"access:services!service={SERVICE_NAME}"],
    "services": ["experiments"],
}


class GatewaySettings(LoggingConfigurable):
    """Whether ``fedhub up`` runs the gateway (read by the launcher from fedhub_config.py)."""

    enabled = Bool(
        False,
        config=True,
        help="""Run dask-gateway-server as the hub service ``dask-gateway`` (needs the
        ``gateway`` extra). Off by default: it adds two processes (~90 MB) and ~0.5 s of
        start-up CPU to every hub, used only by tenants that run Dask clusters
        (docs/gateway.md). ``fedhub up --gateway`` turns it on for one start::

            c.GatewaySettings.enabled = True
        """,
    )


def service_environment(ip: str, tcp_port: int, api_port: int) -> dict[str, str]:
    """What the gateway service is told beyond a managed service's usual environment:
    where its scheduler proxy and its private API server listen."""
    return {
        "FEDHUB_GATEWAY_TCP_ADDRESS": f"{ip}:{tcp_port}",
        "FEDHUB_GATEWAY_API_ADDRESS": f"{ip}:{api_port}",
    }


def client_environment(hub_url: str, ip: str, tcp_port: int) -> dict[str, str]:
    """What a user's server needs for ``dask_gateway.Gateway()`` with no arguments.

    Dask reads ``DASK_GATEWAY__*`` into its ``gateway.*`` configuration; the client
    authenticates with the server's own ``JUPYTERHUB_API_TOKEN`` (auth type jupyterhub).
    The HTTP API is reached through the hub's proxy, the schedulers through the gateway's
    TLS proxy.
    """
    return {
        "DASK_GATEWAY__ADDRESS": f"{hub_url.rstrip('/')}/services/{SERVICE_NAME}",
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{ip}:{tcp_port}",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }
