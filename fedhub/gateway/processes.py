"""``AccountProcesses``: dask-gateway-server's ``LocalBackend``, each cluster as a Unix account.

dask-gateway's ``LocalBackend`` starts a cluster's scheduler and workers as local processes of
the *gateway user's* Unix account (it needs root to switch). fedhub's accounts are not named
after hub users: hub user ``alice`` runs as ``fedhub-alice`` (:func:`fedhub.accounts.account_name`,
the same mapping as the ``UnixAccountSpawner``), made on first use if missing; a cluster a
trusted service runs for tenant ``acme`` runs as ``fedhub_t_acme``. This class owns only that:
which account, its working directory and files, how its processes start; the tenant, tier,
metering and audit logic is :class:`fedhub.gateway.backend.FedhubBackend`'s.

Process owner: schedulers and workers run as the cluster's account with only its own group,
umask 077, in a private working directory (``0700``, the account's) holding the cluster's TLS
key, with only the environment dask-gateway gives a cluster (no hub token, no database URL),
and without dashboards unless asked (a dashboard has no login). Not run as root, the gateway
cannot switch accounts: as fedhub's servers, clusters then run as the gateway's own account.
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from dask_gateway_server.backends.local import LocalBackend
from traitlets import Bool, List, Unicode, default

from fedhub import accounts


class AccountProcesses(LocalBackend):
    """Local processes, each cluster as its owner's (or its tenant's) Unix account."""

    account_prefix = Unicode(
        accounts.ACCOUNT_PREFIX,
        config=True,
        help="""Prefix of the Unix account each hub user's clusters run as (``fedhub-alice``).
        Keep it equal to ``c.UnixAccountSpawner.account_prefix`` so a user's server and
        clusters share one account::

            c.FedhubBackend.account_prefix = "fedhub-"
        """,
    )

    create_accounts = Bool(
        True,
        config=True,
        help="""Create a user's account on their first cluster if their server never made
        it (needs root). With False the account must exist::

            c.FedhubBackend.create_accounts = False
        """,
    )

    home_dir_template = Unicode(
        config=True,
        help="""The user's home (``$HOME`` of schedulers and workers; ``{username}`` is the
        hub username). Default: ``$FEDHUB_STATE_DIR/homes/{username}``, where the embedded
        default's spawner puts homes::

            c.FedhubBackend.home_dir_template = "/srv/fedhub/homes/{username}"
        """,
    )

    @default("home_dir_template")
    def _default_home(self):
        return os.path.join(os.environ.get("FEDHUB_STATE_DIR", "/home"), "homes", "{username}")

    dashboards = Bool(
        False,
        config=True,
        help="""Serve each scheduler's dashboard (through the gateway's proxy at
        ``/services/dask-gateway/clusters/<name>/status``) and each worker's. Off by default:
        a dashboard has no login and listens on a loopback port that any account on this
        host could reach, the tenant's neighbours included::

            c.FedhubBackend.dashboards = True   # one trusted tenant per host
        """,
    )

    tenant_services = List(
        Unicode(),
        ["experiments"],
        config=True,
        help="""Hub services that may run clusters for a tenant they name in the ``tenant``
        option (the experiments service's ``gateway`` mode). Such a cluster runs as the
        tenant's own account (``tenant_account_prefix`` + tenant), is sized by the tenant's
        tier, one per service and tenant (not counted in ``gateway_max_clusters``), and its
        worker time is recorded as ``dask_worker_seconds`` only: the service bills its own
        usage. Any other service's token is refused::

            c.FedhubBackend.tenant_services = ["experiments"]
        """,
    )

    tenant_account_prefix = Unicode(
        config=True,
        help="""Prefix of the account a tenant's service-run clusters use (``fedhub_t_acme``).
        Default: the account prefix (``$FEDHUB_ACCOUNT_PREFIX``, ``fedhub-``) with its final
        dash turned into ``_t_``; an account prefix has no underscore and ends in a dash, so
        a tenant's account is never a user's::

            c.FedhubBackend.tenant_account_prefix = "fedhub_t_"
        """,
    )

    @default("tenant_account_prefix")
    def _default_tenant_prefix(self):
        return accounts.TENANT_ACCOUNT_PREFIX

    @property
    def isolated(self) -> bool:
        """True when clusters run as their owners' accounts (the gateway is root)."""
        return accounts.can_isolate()

    def is_tenant_service(self, username: str) -> bool:
        """``service:<name>`` (dask-gateway's name for a service token) of a trusted service."""
        kind, _, name = username.partition(":")
        return kind == "service" and name in self.tenant_services

    # -- the owner's account --------------------------------------------------------------

    def cluster_account(self, cluster) -> str:
        """The Unix account of ``cluster``: its owner's (``fedhub-alice``), or for a service's
        cluster the tenant's (``fedhub_t_acme``)."""
        if self.is_tenant_service(cluster.username):
            return accounts.tenant_account(cluster.options["tenant"], self.tenant_account_prefix)
        return accounts.account_name(cluster.username, self.account_prefix)

    def _home(self, cluster) -> str:
        if self.is_tenant_service(cluster.username):
            return cluster.state.get("workdir") or "/nonexistent"
        return self.home_dir_template.format(username=cluster.username)

    def _prepare_account(self, account: str, home: str):
        """``account``, created if allowed (blocking)."""
        return accounts.account_for(
            account,
            home=home,
            create=self.create_accounts,
            setting="c.FedhubBackend.create_accounts",
        )

    def setup_working_directory(self, cluster):
        """The cluster's private folder (0700, the owner's) with its TLS cert and key (0600).

        Replaces upstream's: dask-gateway-server 2026.3.0 hands ``list.extend`` the key
        file's path, so ``set_file_permissions`` receives it character by character, ``/``
        first, and its ``LocalBackend`` gives the root directory to the cluster's user.
        """
        if self.clusters_directory:
            workdir = os.path.join(self.clusters_directory, cluster.name)
            os.makedirs(workdir, 0o700)
        else:
            workdir = tempfile.mkdtemp(prefix="dask", suffix=cluster.name)
        certsdir, logsdir = self.get_certs_directory(workdir), self.get_logs_directory(workdir)
        os.mkdir(certsdir, 0o700)
        os.mkdir(logsdir, 0o700)
        cert_path, key_path = self._get_tls_paths(workdir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        for path, data in ((cert_path, cluster.tls_cert), (key_path, cluster.tls_key)):
            with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
                f.write(data)
        self._give([workdir, certsdir, logsdir, cert_path, key_path], self.cluster_account(cluster))
        return workdir

    def set_file_permissions(self, paths, username):
        self._give(paths, accounts.account_name(username, self.account_prefix))

    def _give(self, paths, account: str) -> None:
        if not self.isolated:
            return
        entry = accounts.lookup(account)
        for path in paths:
            if not os.path.isabs(path) or os.path.dirname(path) == path:
                raise ValueError(f"refusing to give {path!r} to {entry.pw_name}")
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    async def start_process(self, cluster, cmd, env, name):
        """Start ``cmd`` as the cluster's owner, its output in ``logs/<name>.log``.

        The log is opened by the gateway (root) inside a folder the owner controls, so
        every step refuses symbolic links: the owner could otherwise swap ``logs`` for a
        link and have root create files wherever it points.
        """
        nofollow = os.O_DIRECTORY | os.O_NOFOLLOW
        work_fd = os.open(cluster.state["workdir"], nofollow)
        try:
            logs_fd = os.open("logs", nofollow, dir_fd=work_fd)
        finally:
            os.close(work_fd)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(f"{name}.log", flags, 0o600, dir_fd=logs_fd)
        finally:
            os.close(logs_fd)
        if self.isolated:  # the owner may read their cluster's logs
            entry = accounts.lookup(self.cluster_account(cluster))
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                preexec_fn=self.make_preexec_fn(cluster),
                start_new_session=True,
                env=env,
                stdout=fd,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            os.close(fd)
        return proc.pid

    def make_preexec_fn(self, cluster):  # pragma: no cover (runs in the child)
        workdir = cluster.state["workdir"]
        entry = accounts.lookup(self.cluster_account(cluster)) if self.isolated else None

        def preexec():
            if entry is not None:
                os.setgid(entry.pw_gid)
                os.setgroups([])  # its own group only, never the gateway's
                os.setuid(entry.pw_uid)
            os.umask(0o077)
            os.chdir(workdir)

        return preexec

    def get_env(self, cluster):
        env = super().get_env(cluster)
        if self.isolated:
            env["USER"] = self.cluster_account(cluster)
        env["HOME"] = self._home(cluster)
        # spill and scratch files in the cluster's private folder, not in a shared
        # /tmp/dask-scratch-space-<uid> another account could have made first
        env["DASK_TEMPORARY_DIRECTORY"] = cluster.state["workdir"]
        return env

    def get_scheduler_command(self, cluster):
        return self._without_dashboard(
            cluster.config.scheduler_cmd, super().get_scheduler_command(cluster)
        )

    def get_worker_command(self, cluster, worker_name, scheduler_address=None):
        cmd = super().get_worker_command(cluster, worker_name, scheduler_address)
        return self._without_dashboard(cluster.config.worker_cmd, cmd)

    def _without_dashboard(self, base: list, cmd: list) -> list:
        if self.dashboards:
            return cmd
        return [*cmd[: len(base)], "--no-dashboard", *cmd[len(base) :]]
