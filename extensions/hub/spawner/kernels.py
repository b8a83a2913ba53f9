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
from collections.abc import Iterable
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parents[3] / "kernels"


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

    The directory is rebuilt each time, so a tier downgrade removes kernels too.
    """
    specs = available(source)
    target = Path(data_dir) / "kernels"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    installed = []
    for name in names:
        if name not in specs:
            continue
        dest = target / name
        shutil.copytree(specs[name], dest)
        spec = json.loads((dest / "kernel.json").read_text())
        if spec.get("argv") and spec["argv"][0] == "python":
            spec["argv"][0] = python
        (dest / "kernel.json").write_text(json.dumps(spec, indent=1))
        installed.append(name)
    return installed
