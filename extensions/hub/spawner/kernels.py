"""Tier kernels: copy the kernel specs a tier allows from ``kernels/`` into a server's data dir.

A spec's ``argv[0]`` of ``python`` is replaced by the interpreter the servers
run with, so a kernel starts in the platform's environment whatever ``PATH``
the server has. The server also gets ``KernelSpecManager.allowed_kernelspecs``,
so kernels installed elsewhere on the machine are not offered.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

# kernels/ in a checkout; package data of fedhub.kernels in a wheel (setup.py)
KERNELS_DIR = Path(str(files("fedhub.kernels")))


def available(source: Path = KERNELS_DIR) -> dict[str, Path]:
    if not source.is_dir():
        return {}
    return {p.name: p for p in sorted(source.iterdir()) if (p / "kernel.json").is_file()}


def install(
    names: Iterable[str],
    data_dir: Path,
    *,
    python: str = sys.executable,
    source: Path = KERNELS_DIR,
) -> list[str]:
    """Install the named specs into ``<data_dir>/kernels``; returns the ones installed.

    The directory is rebuilt each time, so a tier downgrade removes kernels too. It is
    built aside and swapped in by renames: two servers of one user starting at once
    (named servers) must not delete each other's half-copied specs.
    """
    specs = available(source)
    target = Path(data_dir) / "kernels"
    _make_public_dirs(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=".kernels-", dir=target.parent))
    installed = []
    for name in names:
        if name not in specs:
            continue
        dest = staging / name
        shutil.copytree(specs[name], dest)
        spec = json.loads((dest / "kernel.json").read_text())
        if spec.get("argv") and spec["argv"][0] == "python":
            spec["argv"][0] = python
        (dest / "kernel.json").write_text(json.dumps(spec, indent=1))
        installed.append(name)
    _make_readable(staging)
    _swap_in(staging, target)
    return installed


def _make_public_dirs(folder: Path) -> None:
    """Create ``folder`` and missing parents as 0755: user accounts must traverse them."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        path.chmod(0o755)


def _make_readable(folder: Path) -> None:
    """Kernel specs hold no secrets and are read by every user account: 0755 dirs, 0644
    files (the hub's own umask is 077, and mkdtemp makes 0700)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` with ``staging``; whoever renames last wins, nobody sees a half copy."""
    retired = staging.with_name(staging.name + ".old")
    try:
        target.rename(retired)
    except FileNotFoundError:
        pass  # first install, or another spawn has just moved it aside
    try:
        staging.rename(target)
    except OSError:
        # another spawn put its (identical) copy in place between our renames
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
