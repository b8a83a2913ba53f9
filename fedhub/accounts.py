"""Unix accounts for hub users and fedhub's own workers, and the files they own.

On the embedded default (``fedhub up`` run as root) every hub user's server runs
as a system account of its own, made on first spawn the way JupyterHub's
``LocalAuthenticator.create_system_users`` and The Littlest JupyterHub make
theirs (``useradd``, no login shell, no password). The account name is the
hub username with a prefix (:func:`account_name`), so a hub user can never be
mapped onto an existing system account such as ``root`` or ``postgres``.

Everything the hub writes for itself (database, keys, spool, checkpoints) is
private to the hub's account: :func:`private_umask` is applied once at start-up
and files are created with explicit modes (:func:`write_private`), never
``chmod``-ed after the fact.

Not run as root, nothing here can change accounts: :func:`can_isolate` says so
and the launcher, the login page and ``fedhub doctor`` tell the operator.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

MAX_ACCOUNT_NAME = 32  # useradd's limit on Linux
_SAFE = re.compile(r"[^a-z0-9_-]")
_PREFIX = re.compile(r"[a-z][a-z0-9-]{0,14}-")


def _prefix_from_environment() -> str:
    """``$FEDHUB_ACCOUNT_PREFIX``, else ``fedhub-``.

    One setting for the hub and every service (``fedhub up`` hands it to each), so the
    spawner, the scheduler's runs and the gateway's clusters agree on ``alice``'s account.
    """
    prefix = os.environ.get("FEDHUB_ACCOUNT_PREFIX", "fedhub-")
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"FEDHUB_ACCOUNT_PREFIX={prefix!r}: use a lower-case letter, then up to 14 "
            "letters, digits or dashes, ending in a dash (fedhub-)"
        )
    return prefix


ACCOUNT_PREFIX = _prefix_from_environment()
WORKER_ACCOUNT = ACCOUNT_PREFIX + "worker"
# a tenant's own account (``fedhub_t_acme``): the account prefix has no underscore and ends
# in a dash, so no hub user's account can ever start with this
TENANT_ACCOUNT_PREFIX = ACCOUNT_PREFIX[:-1] + "_t_"


class AccountError(RuntimeError):
    """An account could not be made or removed (the message says what to do)."""


def can_isolate() -> bool:
    """True when this process may create accounts and switch to them (root)."""
    return os.geteuid() == 0


def account_name(username: str, prefix: str = ACCOUNT_PREFIX) -> str:
    """The system account of hub user ``username``: ``fedhub-<name>``, at most 32 chars.

    Characters useradd refuses are replaced and long names are shortened with a
    hash suffix, so two hub users never share an account, and none gets
    :data:`WORKER_ACCOUNT`.
    """
    clean = _SAFE.sub("-", username.lower())
    name = prefix + clean
    # a hub user called "worker" must not become the Dask workers' account
    if name != prefix + username or len(name) > MAX_ACCOUNT_NAME or name == WORKER_ACCOUNT:
        digest = hashlib.sha256(username.encode()).hexdigest()[:8]
        name = (prefix + clean)[: MAX_ACCOUNT_NAME - 9] + "-" + digest
    return name


def tenant_account(slug: str, prefix: str = TENANT_ACCOUNT_PREFIX) -> str:
    """The system account of tenant ``slug`` itself: ``fedhub_t_acme``, at most 32 chars.

    Processes that work for a tenant rather than for one of its users run as it: the
    tenant's gateway clusters, its dataset store and the workers that read that store.
    Shortened with a hash like :func:`account_name`, so two tenants never share one.
    """
    return account_name(slug, prefix)


def lookup(account: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(account)
    except KeyError:
        return None


def ensure_account(account: str, *, home: str | Path | None = None) -> pwd.struct_passwd:
    """The account ``account``, created as a system user with its own group if missing.

    Its home in ``/etc/passwd`` is ``home`` (not created here: :func:`make_home`).
    """
    found = lookup(account)
    if found is not None:
        return found
    if not can_isolate():
        raise AccountError(f"cannot create system account {account!r}: fedhub is not root")
    cmd = [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--home-dir",
        str(home or "/nonexistent"),
        account,
    ]
    result = _run_locked(cmd)
    # two spawns may race to create the same account; the loser sees exit 9
    if result.returncode not in (0, 9):
        raise AccountError(f"useradd {account} failed: {result.stderr.strip()}")
    found = lookup(account)
    if found is None:
        raise AccountError(f"useradd {account} reported success but the account is missing")
    return found


def account_for(
    account: str, *, home: str | Path, create: bool, setting: str
) -> pwd.struct_passwd | None:
    """The account to switch to: None when not root (nothing can be switched), else
    ``account``, made now when ``create`` and otherwise required to exist already.

    ``setting`` names the option that turned creation off, for the error.
    """
    if not can_isolate():
        return None
    if create:
        return ensure_account(account, home=home)
    entry = lookup(account)
    if entry is None:
        raise AccountError(f"system account {account!r} does not exist and {setting} is False")
    return entry


def _run_locked(cmd: list[str], attempts: int = 20) -> subprocess.CompletedProcess:
    """Run a shadow-utils command, again while another holds ``/etc/passwd``'s lock.

    useradd and userdel give up at once ("cannot lock /etc/passwd; try again later")
    when another account is being made at the same moment, as when many users' first
    servers start together.
    """
    for attempt in range(attempts):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode == 0 or "cannot lock" not in result.stderr:
            return result
        time.sleep(0.05 * (attempt + 1))
    return result


def remove_account(account: str) -> bool:
    """Kill every process of ``account`` and delete it; True if it existed."""
    entry = lookup(account)
    if entry is None or not can_isolate():
        return False
    subprocess.run(["pkill", "-KILL", "-u", str(entry.pw_uid)], capture_output=True)
    result = _run_locked(["userdel", account])
    if result.returncode not in (0, 6):  # 6: no such user (removed meanwhile)
        raise AccountError(f"userdel {account} failed: {result.stderr.strip()}")
    try:  # --user-group made a group of the same name; userdel removes it when unused
        grp.getgrnam(account)
        subprocess.run(["groupdel", account], capture_output=True)
    except KeyError:
        pass
    return True


def make_home(path: str | Path, entry: pwd.struct_passwd | None) -> Path:
    """Create ``path`` as a home: mode 0700, owned by ``entry`` (or by us without one).

    Parent folders are made traversable-only (0711) so the account can reach its
    home without listing its neighbours.
    """
    home = Path(path)
    if not home.parent.exists():
        home.parent.mkdir(parents=True, exist_ok=True)
        home.parent.chmod(0o711)  # explicit: the hub's umask is 077
    try:
        home.mkdir(mode=0o700)
    except FileExistsError:
        pass
    if entry is not None and can_isolate():
        st = home.stat()
        if (st.st_uid, st.st_gid) != (entry.pw_uid, entry.pw_gid):
            os.chown(home, entry.pw_uid, entry.pw_gid)
    return home


def chown_tree(path: str | Path, entry: pwd.struct_passwd) -> None:
    """Give ``path`` and everything under it to ``entry`` (files the hub put in a home)."""
    if not can_isolate():
        return
    root = Path(path)
    os.chown(root, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def archive_home(home: str | Path, archive_dir: str | Path) -> Path | None:
    """Move ``home`` into ``archive_dir`` (private to the hub); None if there was none.

    The archive keeps the files for an operator (backups, legal holds) while a
    user who comes back under the same name starts with an empty home.
    """
    home = Path(home)
    if not home.exists():
        return None
    archive = Path(archive_dir)
    archive.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = archive / f"{home.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    shutil.move(str(home), str(target))
    os.chmod(target, 0o700)  # the archive is the hub's, whatever the home's mode was
    if can_isolate():
        os.chown(target, 0, 0)
    return target


def private_umask() -> int:
    """Make every file this process creates private to its account; returns the old umask."""
    return os.umask(0o077)


def make_private_dir(path: str | Path) -> Path:
    """A directory only this process's account can open (created 0700; not re-moded)."""
    folder = Path(path)
    missing = []
    while not folder.exists():  # mkdir(parents=True) makes parents with the umask's mode
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(mode=0o700, exist_ok=True)
    return Path(path)


def write_private(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically, created 0600 (never readable by others)."""
    path = Path(path)
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def blocked_for_others(path: str | Path) -> Path | None:
    """The first folder on ``path`` (symlinks resolved) that other accounts cannot enter,
    or the file itself if they cannot read it; None when ``path`` is reachable."""
    real = Path(os.path.realpath(path))
    for folder in reversed(real.parents):
        if not folder.stat().st_mode & 0o001:
            return folder
    return None if real.stat().st_mode & 0o004 else real


def check_runnable_by_users(executable: str | Path) -> None:
    """Refuse to start when user accounts could not run the platform's Python.

    A Python installed under a private home (pyenv in ``/root``) would make every
    spawn fail with a bare "Permission denied"; say what to do instead.
    """
    blocked = blocked_for_others(executable)
    if blocked is not None:
        raise AccountError(
            f"user servers run as their own accounts, which cannot reach {blocked} "
            f"(needed to run {os.path.realpath(executable)}). Create the virtualenv with "
            "a system Python (make does: /usr/bin/python3 -m venv .venv), or make the "
            "folder traversable (chmod o+x)."
        )
