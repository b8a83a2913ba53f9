"""A fedhub service process: its configuration, its server loop, its place under the hub.

Each service (billing, audit, experiments, scheduler) is a :class:`ServiceApp`, a small
traitlets ``Application`` as in dask-gateway, that loads the one fedhub configuration file
and serves the tornado application its handlers make (:mod:`fedhub.web`) until the hub
stops it. :func:`managed_service` is the ``JupyterHub.services`` entry that starts one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from typing import Any
from urllib.parse import urlparse

from tornado import ioloop, web
from traitlets import Bool, List, Unicode, default
from traitlets.config import Application

from fedhub import ratelimit
from fedhub.config import Fedhub, default_config_file, load_config_file
from fedhub.db import rls
from fedhub.errors import FedhubError
from fedhub.tenancy import scopes as fedhub_scopes

log = logging.getLogger("fedhub.service")


def listen_address() -> tuple[str, int]:
    """Where the service listens: its URL's host and port.

    ``FEDHUB_SERVICE_BIND_HOST`` replaces the host when the URL names one that is not
    an address of this machine, e.g. ``http://hub:10101`` in a Kubernetes hub pod
    (the hub's Service name), where the service listens on ``0.0.0.0``.
    """
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:0"))
    host = os.environ.get("FEDHUB_SERVICE_BIND_HOST") or url.hostname or "127.0.0.1"
    return host, url.port or 0


STOP_DEADLINE = 2.5  # seconds a service may take to stop after SIGINT/SIGTERM


def _exit_now(reason: str | None = "deadline") -> None:
    import psutil

    if reason:
        log.warning("service did not stop within %ss; ending it", STOP_DEADLINE)
    for child in psutil.Process().children(recursive=True):
        child.kill()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"
    )


def run(app: web.Application, on_stop=None) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (the hub's shutdown), then call ``on_stop``."""
    setup_logging()
    # the hub may start services with SIGINT ignored; restore it so shutdown is prompt
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    loop = ioloop.IOLoop.current()

    def stop(*_):
        # The hub waits for its services at shutdown; a service that cannot
        # finish on_stop in time is ended, children first, so Ctrl-C on
        # `fedhub up` never hangs and never leaves a process behind.
        watchdog = threading.Timer(STOP_DEADLINE, _exit_now)
        watchdog.daemon = True  # must not itself keep the process alive
        watchdog.start()
        loop.add_callback_from_signal(loop.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = listen_address()
    app.listen(port, address=host)
    log.info(
        "listening on http://%s:%s%s", host, port, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    )
    try:
        loop.start()
    finally:
        if on_stop:
            with rls.platform():  # the last flush of every tenant's counts
                on_stop()
    # on_stop has saved what matters; skip the interpreter's slow teardown of
    # torch/Dask threads so the hub, which stops its services one by one, is not kept waiting
    _exit_now(reason=None)


class ServiceApp(Application):
    """A fedhub service process, a small traitlets ``Application`` as in dask-gateway.

    ``initialize()`` parses ``--Part.option=value`` arguments, loads the one fedhub
    configuration file (:attr:`config_file`, shared with the hub and every other service)
    and names the tiers file for this process (``c.Fedhub.tiers_file``). A subclass lists
    its ``Configurable`` parts in ``classes`` (``fedhub config show`` reads that list),
    builds them with ``parent=self`` so that ``c.Part.option`` lines reach them, and
    returns its tornado application from :meth:`make_app`; ``start()`` serves it until
    the hub stops the service.
    """

    name = "fedhub-service"
    classes = List([Fedhub, ratelimit.RateLimits])
    aliases = {"config": "ServiceApp.config_file", "f": "ServiceApp.config_file"}

    config_file = Unicode(
        config=True,
        help="""The fedhub configuration file (``fedhub_config.py``: ``c.Part.option = ...``
        lines). Default: ``$FEDHUB_CONFIG_FILE`` (the hub sets it for its managed
        services), else ``$FEDHUB_STATE_DIR/fedhub_config.py`` if it exists, else none.

            python -m fedhub.services.billing --config=/etc/fedhub/fedhub_config.py
        """,
    )

    row_level_security = Bool(
        True,
        config=True,
        help="""Fail closed on PostgreSQL: a transaction of this service that did not say
        whom it works for (a request's tenant, or platform work) runs as the
        ``fedhub_tenant`` role with no tenant and sees no tenant-owned rows
        (:mod:`fedhub.db.rls`, docs/security.md "Row-level security"). Turn off only to
        find which code path forgot its scope; SQLite is not affected.

            c.ServiceApp.row_level_security = True
        """,
    )

    @default("config_file")
    def _default_config_file(self):
        return default_config_file()

    @default("log")
    def _default_log(self):
        return logging.getLogger(f"fedhub.{self.name}")

    def initialize(self, argv=None) -> None:
        setup_logging()
        self.parse_command_line(argv)
        try:
            if self.config_file:
                self.update_config(load_config_file(self.config_file))
                self.update_config(self.cli_config)  # the command line wins over the file
                self.log.info("configuration from %s", self.config_file)
            self.fedhub = Fedhub(parent=self)
            self.tiers = self.fedhub.apply()
            ratelimit.configure_service(self)
        except FedhubError as e:  # a configuration error: one clear line, no traceback
            self.log.critical("the %s service cannot start: %s", self.name, e.message)
            sys.exit(1)

    def make_app(self) -> tuple[web.Application, Any]:
        """The service's tornado application and its ``on_stop`` callable (or None)."""
        raise NotImplementedError

    def start(self) -> None:
        app, on_stop = self.make_app()
        # from here on, every transaction says whom it is for (requests: APIHandler.prepare;
        # background work: fedhub.jobs.PeriodicJob)
        rls.enforce(self.row_level_security)
        run(app, on_stop=on_stop)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for a managed service, the hub, the proxy API)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def managed_service(name: str, module: str, ctx, *, extra_env: dict | None = None) -> dict:
    """A ``JupyterHub.services`` entry that runs ``python -m module`` under the hub.

    The service gets the hub's fedhub configuration file (``FEDHUB_CONFIG_FILE``) and
    where the state and database are; everything else it reads from that file.
    """
    env = {
        "FEDHUB_DB_URL": ctx.db_url,
        "FEDHUB_STATE_DIR": str(ctx.state_dir),
        "PYTHONUNBUFFERED": "1",
    }
    if getattr(ctx, "config_file", None):
        env["FEDHUB_CONFIG_FILE"] = str(ctx.config_file)
    for key in ("FEDHUB_TIERS", "FEDHUB_EVENTS_SPOOL", "FEDHUB_ACCOUNT_PREFIX"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    env.update(extra_env or {})
    return {
        "name": name,
        "url": f"http://127.0.0.1:{free_port()}",
        "command": [sys.executable, "-m", module],
        "environment": env,
        "oauth_no_confirm": True,
        # a browser session's token gets the user's fedhub scopes (as JupyterHub filters
        # them), so the service answers it as it answers the user's own API token
        "oauth_client_allowed_scopes": list(fedhub_scopes.ALL_SCOPES),
        "display": True,
    }
