"""Settings of the fedhub server extension, defaulting to what the tier spawner sets."""

from __future__ import annotations

import os

from traitlets import Float, Unicode, default
from traitlets.config import Configurable


class FedhubQuota(Configurable):
    """Where the user's server finds its tenant, tier and the experiments service."""

    tenant = Unicode(help="""The user's tenant (default ``$FEDHUB_TENANT``).""").tag(config=True)
    tier = Unicode(help="""The tenant's tier (default ``$FEDHUB_TIER``).""").tag(config=True)
    role = Unicode(help="""The user's fedhub role (default ``$FEDHUB_ROLE``).""").tag(config=True)
    experiments_url = Unicode(
        help="""Base URL of the experiments service (default ``$FEDHUB_EXPERIMENTS_URL``).

            c.FedhubQuota.experiments_url = "http://127.0.0.1:8101/services/experiments/"
        """
    ).tag(config=True)
    api_token = Unicode(
        help="""Token for the service (default ``$JUPYTERHUB_API_TOKEN``); never logged."""
    ).tag(config=True)
    request_timeout = Float(5.0, help="""Seconds to wait for the service.""").tag(config=True)

    @default("tenant")
    def _tenant(self):
        return os.environ.get("FEDHUB_TENANT", "")

    @default("tier")
    def _tier(self):
        return os.environ.get("FEDHUB_TIER", "")

    @default("role")
    def _role(self):
        return os.environ.get("FEDHUB_ROLE", "")

    @default("experiments_url")
    def _url(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_URL", "")

    @default("api_token")
    def _token(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")
