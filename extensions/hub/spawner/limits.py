"""Resource limits for servers that run as local processes.

Storage is measured by :mod:`fedhub.storage` (the same code for the quota and the bill).

What the machine can enforce is probed, never assumed: ``RLIMIT_AS`` works
wherever ``setrlimit`` does; cgroup v2 limits need a cgroup2 mount whose
``memory`` and ``cpu`` controllers are enabled and writable by the hub. What
cannot be enforced is reported by :func:`probe` (and ``fedhub doctor``) and
stays advisory (``MEM_LIMIT``/``CPU_LIMIT`` in the environment).
"""

from __future__ import annotations

import os
import resource
from dataclasses import asdict, dataclass
from pathlib import Path

from fedhub import storage as _storage

CGROUP_ROOT_NAME = "fedhub"


def cgroup2_mount() -> Path | None:
    """The cgroup v2 mount point, if any (``/sys/fs/cgroup`` or a hybrid ``unified``)."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            return Path(parts[1])
    return None


@dataclass(frozen=True)
class Enforcement:
    """What this machine enforces for local servers."""

    rlimit_as: bool
    rlimit_detail: str
    cgroup_v2: bool
    cgroup_detail: str
    cgroup_path: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def _probe_rlimit() -> tuple[bool, str]:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError) as e:
        return False, f"getrlimit failed: {e}"
    # a process may always lower its own limit; raising above the hard limit is impossible
    if hard == resource.RLIM_INFINITY:
        return True, "RLIMIT_AS can be set per server (hard limit unlimited)"
    return True, f"RLIMIT_AS can be set up to the hub's hard limit ({hard} bytes)"


def _probe_cgroup(parent: Path | None = None) -> tuple[bool, str, Path | None]:
    mount = cgroup2_mount()
    if mount is None:
        return False, "no cgroup v2 mount", None
    base = parent or mount
    try:
        controllers = (base / "cgroup.controllers").read_text().split()
    except OSError as e:
        return False, f"{base}/cgroup.controllers unreadable ({e.strerror})", None
    missing = {"memory", "cpu"} - set(controllers)
    if missing:
        return (
            False,
            f"cgroup v2 at {base} lacks the {', '.join(sorted(missing))} controller(s) "
            "(hybrid hierarchy or a container without delegation)",
            None,
        )
    if not os.access(base, os.W_OK):
        return False, f"cgroup v2 at {base} is not writable by uid {os.geteuid()}", None
    return True, f"cgroup v2 memory.max and cpu.max under {base / CGROUP_ROOT_NAME}", base


def probe() -> Enforcement:
    ok_r, why_r = _probe_rlimit()
    ok_c, why_c, path = _probe_cgroup()
    return Enforcement(ok_r, why_r, ok_c, why_c, str(path) if path else None)


def make_cgroup(base: Path, name: str, memory_bytes: int, cpu: float) -> Path:
    """Create ``<base>/fedhub/<name>`` with ``memory.max`` and ``cpu.max`` set."""
    root = base / CGROUP_ROOT_NAME
    root.mkdir(exist_ok=True)
    # enable the controllers for children of fedhub/ (idempotent)
    (base / "cgroup.subtree_control").write_text("+memory +cpu")
    (root / "cgroup.subtree_control").write_text("+memory +cpu")
    group = root / name
    group.mkdir(exist_ok=True)
    if memory_bytes:
        (group / "memory.max").write_text(str(memory_bytes))
    if cpu:
        period = 100_000
        (group / "cpu.max").write_text(f"{int(cpu * period)} {period}")
    return group


def remove_cgroup(group: Path) -> None:
    try:
        group.rmdir()
    except OSError:
        pass  # still has processes, or never existed: the next start reuses it


def limit_preexec(parent, memory_bytes: int | None, cgroup: Path | None):
    """A ``preexec_fn`` that runs the backend's own, then applies the limits in the child."""

    def preexec():
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        if memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        if parent is not None:
            parent()

    return preexec


# kept for callers of the old location: the one measurement lives in fedhub.storage
directory_bytes = _storage.directory_bytes
