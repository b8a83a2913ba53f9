"""``python -m fedhub.gateway``: dask-gateway-server configured for fedhub, run by the hub.

The hub starts it as the managed service ``dask-gateway`` (:func:`fedhub.gateway.service_spec`)
and so gives it its own API token (``JUPYTERHUB_API_TOKEN``), the hub's API URL and its
service name: dask-gateway's ``JupyterHubAuthenticator`` reads all three and accepts a
user's token only if it may access this service (``access:services``). fedhub's defaults
come first, then the one fedhub configuration file (``$FEDHUB_CONFIG_FILE``), where any
dask-gateway option can be set (``c.FedhubBackend.meter_interval = 30``,
``c.ClusterConfig.idle_timeout = 1800``, ``c.Proxy.tls_cert = ...``).

Three listeners, all on loopback by default: the HTTP proxy (the service's URL; the hub's
proxy forwards ``/services/dask-gateway/`` to it), the scheduler proxy (TLS with SNI, the
``DASK_GATEWAY__PROXY_ADDRESS`` clients connect to) and the private API server behind
both. State is kept in ``<state>/gateway/`` (0700): the cluster database (SQLite, private
fields encrypted) and its encryption key (0600). The proxy's API token is made anew at
each start and handed to the proxy process only through its environment.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import sys
from pathlib import Path
from urllib.parse import urlparse

from dask_gateway_server.app import DaskGateway
from traitlets import default
from traitlets.config import Config

from fedhub import accounts
from fedhub.config import Fedhub, default_config_file
from fedhub.errors import FedhubError


def state_dir() -> Path:
    """``<state>/gateway``, created 0700."""
    state = os.environ.get("FEDHUB_STATE_DIR") or "."
    return accounts.make_private_dir(Path(state).resolve() / "gateway")


def encrypt_key(folder: Path) -> str:
    """The key that encrypts the cluster database's TLS keys and tokens (made once, 0600)."""
    path = folder / "encrypt.key"
    if not path.exists():
        accounts.write_private(path, base64.b64encode(secrets.token_bytes(32)).decode())
    return path.read_text().strip()


def _host_port(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port}"


def fedhub_defaults() -> Config:
    """What the embedded deployment sets before the fedhub configuration file is read."""
    folder = state_dir()
    c = Config()
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
    c.DaskGateway.backend_class = "fedhub.gateway.backend.FedhubBackend"
    c.DaskGateway.address = os.environ.get("FEDHUB_GATEWAY_API_ADDRESS", "127.0.0.1:0")
    if os.environ.get("JUPYTERHUB_SERVICE_URL"):
        c.Proxy.address = _host_port(os.environ["JUPYTERHUB_SERVICE_URL"])
    if os.environ.get("FEDHUB_GATEWAY_TCP_ADDRESS"):
        c.Proxy.tcp_address = os.environ["FEDHUB_GATEWAY_TCP_ADDRESS"]
    c.Proxy.prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/")
    c.FedhubBackend.db_url = f"sqlite:///{folder / 'clusters.sqlite'}"
    c.FedhubBackend.db_encrypt_keys = [encrypt_key(folder)]
    # the venv's Dask, whatever PATH the clusters' accounts have
    c.ClusterConfig.scheduler_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    c.ClusterConfig.worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
    return c


class FedhubGatewayApp(DaskGateway):
    """dask-gateway-server with fedhub's defaults and fedhub's configuration file."""

    name = "fedhub-gateway"

    @default("config_file")
    def _default_config_file(self):
        return default_config_file()

    def initialize(self, argv=None):
        # the hub may start services with SIGINT ignored (docs/architecture.md)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        accounts.private_umask()
        self.update_config(fedhub_defaults())
        super().initialize(argv)  # then the file (c.Part.option lines) and the command line
        try:
            Fedhub(parent=self).apply()  # the tiers file of the hub and every service
        except FedhubError as e:
            self.log.critical("the gateway cannot start: %s", e.message)
            sys.exit(1)


main = FedhubGatewayApp.launch_instance
