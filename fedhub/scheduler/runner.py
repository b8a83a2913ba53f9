"""Start one run as its owner's Unix account, with the tier's limits, and wait for it.

Process owner: :mod:`fedhub.scheduler.execute` (papermill and its kernel) runs as
``fedhub-<user>`` (:func:`fedhub.accounts.account_name`), the account the owner's server
runs as, dropped to with JupyterHub's ``set_user_setuid`` after the limits are set, as the
spawner does (``limit_preexec``): the child can read the platform's Python and the owner's
home, nothing of the hub's state. It gets its own session so a timeout or a cancel ends
the kernel too, and dies with the service (``PR_SET_PDEATHSIG``), so a run is never left
going with nobody to record it. Without root (no isolation) it runs as the service's
account, as user servers then do.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyterhub.spawner import set_user_setuid

from fedhub import accounts

PR_SET_PDEATHSIG = 1


class RunnerError(RuntimeError):
    """A run could not be started (the message is safe to show to its owner)."""


#: the run's files: private to the owner, whatever umask the service runs with
RUN_UMASK = 0o077


@dataclass
class RunRequest:
    """Everything one run needs, as plain values (it runs in a worker thread)."""

    run_id: str
    username: str
    home: Path
    notebook: Path
    outdir: Path
    parameters: dict
    timeout: float
    memory_bytes: int | None = None
    cpu_seconds: int | None = None
    kernel: str | None = None
    formats: list[str] = field(default_factory=lambda: ["ipynb", "html"])
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    status: str
    error: str | None
    error_cell: dict | None
    seconds: float
    outputs: list[str]


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: a run outlives a crashed service
        pass


def preexec(req: RunRequest, entry):
    """Limits first (root may still raise them), then the owner's account, then its home."""
    switch = set_user_setuid(entry.pw_name, chdir=False) if entry is not None else None

    def run():
        if req.memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (req.memory_bytes, req.memory_bytes))
        if req.cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (req.cpu_seconds, req.cpu_seconds))
        if switch is not None:
            switch()
        _die_with_parent()  # after the switch: changing credentials clears the setting
        os.umask(RUN_UMASK)
        os.chdir(req.home)

    return run


def owner_entry(username: str, home: Path):
    """The owner's account (made if missing, as on first spawn) and private home; None
    when fedhub is not root and cannot switch accounts."""
    if not accounts.can_isolate():
        accounts.make_home(home, None)
        return None
    entry = accounts.ensure_account(accounts.account_name(username), home=home)
    accounts.make_home(home, entry)
    return entry


def make_outdir(req: RunRequest, entry) -> None:
    """``<home>/reports/<job>/<run>/``, each folder owned by the owner."""
    path = req.home
    for part in req.outdir.relative_to(req.home).parts:
        path = path / part
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            # the owner may have put a link here: root must not follow it anywhere
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or (entry and st.st_uid != entry.pw_uid):
                raise RunnerError(f"{path} is not a folder of {req.username}'s") from None
            continue
        if entry is not None:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def start(req: RunRequest) -> subprocess.Popen:
    entry = owner_entry(req.username, req.home)
    make_outdir(req, entry)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(req.home),
        "USER": entry.pw_name if entry is not None else os.environ.get("USER", ""),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "FEDHUB_RUN_PARAMETERS": json.dumps(req.parameters),
        "FEDHUB_RUN_ID": req.run_id,
        "FEDHUB_RUN_FORMATS": json.dumps(req.formats),
        **({"FEDHUB_RUN_KERNEL": req.kernel} if req.kernel else {}),
        **req.env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "fedhub.scheduler.execute", str(req.notebook), str(req.outdir)],
        env=env,
        cwd="/",
        preexec_fn=preexec(req, entry),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill(proc: subprocess.Popen) -> None:
    """End the run's whole session (papermill and its kernel)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait(req: RunRequest, proc: subprocess.Popen, cancelled=lambda: False) -> RunResult:
    """Wait for the run, ending it at its timeout or when ``cancelled()`` says so."""
    began = time.monotonic()
    status = None
    while proc.poll() is None:
        if time.monotonic() - began > req.timeout:
            status = "timed_out"
        elif cancelled():
            status = "cancelled"
        if status:
            kill(proc)
            proc.wait()
            break
        time.sleep(0.2)
    seconds = time.monotonic() - began
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    outputs = sorted(p.name for p in req.outdir.glob("notebook.*"))
    if status == "timed_out":
        return RunResult(status, f"the run exceeded its timeout ({req.timeout:g} s)", None,
                         seconds, outputs)  # fmt: skip
    if status == "cancelled":
        return RunResult(status, "cancelled", None, seconds, outputs)
    return _read_result(req, proc.returncode, stderr, seconds, outputs)


def read_owned(path: Path, limit: int = 64 << 20) -> bytes:
    """A file the owner's process wrote, read by the service (root) without following a
    link the owner may have put there."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit)
    finally:
        os.close(fd)


def read_in_home(path: Path, home: Path) -> bytes:
    """A file of the owner's home, read by root only if it really lies inside the home (no
    link out of it on the way, none as the file)."""
    real = os.path.realpath(path)
    if not real.startswith(os.path.realpath(home) + os.sep):
        raise OSError(f"{path.name} is not inside the owner's home")
    return read_owned(Path(real))


def _read_result(req, returncode, stderr, seconds, outputs) -> RunResult:
    try:
        # written by the owner's process: read, never trusted beyond these three keys
        found = json.loads(read_in_home(req.outdir / "result.json", req.home))
        status = "succeeded" if found.get("status") == "succeeded" else "failed"
        cell = found.get("error_cell") if isinstance(found.get("error_cell"), dict) else None
        return RunResult(status, found.get("error"), cell, seconds, outputs)
    except (OSError, ValueError, AttributeError):
        last = stderr.strip().splitlines()[-1:] or [f"exit status {returncode}"]
        return RunResult("failed", f"the run ended without a result: {last[0][:500]}", None,
                         seconds, outputs)  # fmt: skip
