"""Processes the tests start for real: a fedhub hub and a PostgreSQL cluster."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

PG_BIN = Path(os.environ.get("FEDHUB_PG_BIN", "/usr/lib/postgresql/15/bin"))
ROOT = Path(__file__).resolve().parent.parent


def settled_period():
    """The newest billing period whose grace has passed: closing it finalizes its invoices
    whatever today's date (in the first ``grace_days`` of a month, last month's invoices are
    still drafts, and a test that needs a finalized invoice would fail on those days)."""
    from fedhub.billing.periods import containing
    from fedhub.billing.settings import BillingSettings
    from fedhub.db.base import utcnow

    now = utcnow()
    period = containing(now).previous()
    if now < period.end + BillingSettings().grace:
        period = period.previous()
    return period


def this_month(hours: float = 1.0):
    """``(start, end)``: the last ``hours`` up to now, cut at the start of this billing
    month, so usage recorded over it counts this month whatever the time (usage that
    started "an hour ago" at 00:30 on the 1st would count last month)."""
    from datetime import timedelta

    from fedhub.billing.periods import containing
    from fedhub.db.base import utcnow

    now = utcnow()
    return max(now - timedelta(hours=hours), containing(now).start), now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the thing may not be up yet
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}" + (f" ({last_exc})" if last_exc else "")
    )


class PostgresCluster:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 (``initdb`` + ``pg_ctl``)."""

    def __init__(self, base_url: str, datadir: Path | None = None, run_as: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.datadir = datadir
        self.run_as = run_as

    @classmethod
    def external(cls, url: str) -> PostgresCluster:
        base = url.rsplit("/", 1)[0]
        return cls(base)

    @classmethod
    def start(cls) -> PostgresCluster:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN}; set FEDHUB_PG_BIN")
        import tempfile

        datadir = Path(tempfile.mkdtemp(prefix="fedhub-pg-"))
        run_as = None
        if os.geteuid() == 0:  # initdb refuses root
            run_as = "postgres"
            uid = pwd.getpwnam(run_as)
            os.chown(datadir, uid.pw_uid, uid.pw_gid)
        port = free_port()

        def run(*args):
            cmd = [str(PG_BIN / args[0]), *args[1:]]
            if run_as:
                cmd = ["runuser", "-u", run_as, "--", *cmd]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        run(
            "initdb",
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={datadir} "
            "-c fsync=off -c max_connections=200"
        )
        run("pg_ctl", "-D", str(datadir), "-o", opts, "-l", str(datadir / "log"), "-w", "start")
        return cls(f"postgresql+psycopg://postgres@127.0.0.1:{port}", datadir, run_as)

    def create_database(self, name: str) -> str:
        import psycopg

        dsn = self.base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.base_url}/{name}"

    def stop(self) -> None:
        if self.datadir is None:
            return
        pid_file = self.datadir / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)  # fast shutdown
            try:
                wait_for(lambda: not _alive(pid), 20, what="postgres to stop")
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.datadir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _reap(processes: list[psutil.Process], grace: float = 5) -> None:
    """SIGTERM, then SIGKILL, the processes of ``processes`` still running.

    ``psutil.Process`` checks its creation time before signalling, so a PID reused
    meanwhile by another process is left alone.
    """
    alive = [p for p in processes if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(alive, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)


class HubProcess:
    """``fedhub up`` in a subprocess, on free ports, in its own process group."""

    def __init__(
        self,
        state_dir: Path,
        *,
        db_url=None,
        args=(),
        env=None,
        demo=True,
        password="x",
        run_as: str | None = None,
        command: list[str] | None = None,
        cwd: Path = ROOT,
        fedhub_config: str | None = None,
        options_after_up: bool = False,
    ):
        self.state_dir = Path(state_dir)
        # the text of <state>/fedhub_config.py, written before the hub starts
        self.fedhub_config = fedhub_config
        # `fedhub up --state-dir D --db-url U` instead of `fedhub --state-dir D ... up`
        self.options_after_up = options_after_up
        # how to run the CLI: this interpreter's fedhub by default; an installed wheel's
        # `fedhub` script, run from outside the checkout, in the wheel test
        self.command = command or [sys.executable, "-m", "fedhub.cli"]
        self.cwd = cwd
        self.run_as = run_as  # a Unix account to run the hub as (root by default here)
        self.db_url = db_url or f"sqlite:///{self.state_dir / 'jupyterhub.sqlite'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.password = password
        self.demo = demo
        self.env = dict(
            os.environ,
            FEDHUB_DEMO_PASSWORD=password,
            FEDHUB_STATE_DIR=str(self.state_dir),
            FEDHUB_DB_URL=self.db_url,
            PYTHONUNBUFFERED="1",
            **(env or {}),
        )
        self.proc: subprocess.Popen | None = None
        self.log_path = self.state_dir / "hub.log"
        self._tokens: dict[str, str] = {}

    # -- lifecycle --------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        if self.fedhub_config is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / "fedhub_config.py").write_text(self.fedhub_config)
        where = ["--state-dir", str(self.state_dir), "--db-url", self.db_url]
        if self.options_after_up:
            cmd = [*self.command, "up", *where, "--port", str(self.port)]
        else:
            cmd = [*self.command, *where, "up", "--port", str(self.port)]
        if self.demo:
            cmd.append("--demo")
        cmd += ["--", *self.args] if self.args else []
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=self.run_as,
            group=self.run_as,
            extra_groups=[] if self.run_as else None,
        )
        try:
            wait_for(self._ready, timeout, interval=0.2, what=f"hub at {self.url}")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"hub did not start; log:\n{self.log()[-4000:]}") from None

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"hub exited with {self.proc.returncode}; log:\n{self.log()[-4000:]}"
            )
        return requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # the proxy, the services and user servers run in sessions of their own
        # (JupyterHub starts them so): note them now, while they are still the hub's
        # children, and stop by PID whatever outlives the hub
        family = _descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()
        _reap(family)

    # -- talking to it -----------------------------------------------------------

    def login(
        self, username: str, password: str | None = None, otp: str | None = None
    ) -> requests.Response:
        """Log in through the form; returns the response (302 on success), with ``.session``."""
        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=10)
        data = {
            "username": username,
            "password": self.password if password is None else password,
            "_xsrf": s.cookies.get("_xsrf"),
        }
        if otp is not None:
            data["otp"] = otp
        r = s.post(f"{self.url}/hub/login", data=data, allow_redirects=False, timeout=30)
        r.session = s
        return r

    def token(self, username: str, password: str | None = None) -> str:
        """An API token of ``username``, made through a real login."""
        if username in self._tokens and password is None:
            return self._tokens[username]
        r = self.login(username, password)
        assert r.status_code == 302, f"login of {username} failed: {r.status_code}"
        s = r.session
        r = s.post(
            f"{self.url}/hub/api/users/{username}/tokens",
            json={"note": "fedhub tests"},
            headers={"X-XSRFToken": s.cookies.get("_xsrf"), "Referer": f"{self.url}/hub/"},
            timeout=10,
        )
        r.raise_for_status()
        token = r.json()["token"]
        if password is None:
            self._tokens[username] = token
        return token

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        url = path if path.startswith("http") else f"{self.url}{path}"
        return requests.request(
            method, url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs
        )

    def fedhub(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``fedhub`` CLI against this hub's database."""
        return subprocess.run(
            [
                *self.command,
                "--db-url",
                self.db_url,
                "--state-dir",
                str(self.state_dir),
                *args,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            cwd=self.cwd,
        )
