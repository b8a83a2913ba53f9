"""``fedhub doctor``: what this machine enforces for the tier spawner, and what is advisory."""

from __future__ import annotations

import os

import click

from fedhub.cli.common import output, table


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True)
def command(as_json: bool) -> None:
    """Show which resource limits are enforced here (RLIMIT_AS, cgroup v2) per backend."""
    from fedhub.extensions.hub.spawner import kernels, limits, profiles

    found = limits.probe()
    backends = {
        kind: profiles.enforcement(kind, rlimit=found.rlimit_as, cgroup=found.cgroup_v2)
        for kind in ("local", "systemd", "docker", "kubernetes")
    }
    isolation = isolation_status()
    data = {
        "isolation": isolation,
        "local_process": found.as_dict(),
        "backends": backends,
        "kernels": sorted(kernels.available()),
    }
    lines = [
        f"user isolation (local servers):   {isolation['summary']}",
        f"RLIMIT_AS (memory, per process):  {'enforced' if found.rlimit_as else 'NOT enforced'}"
        f" - {found.rlimit_detail}",
        f"cgroup v2 memory.max / cpu.max:   {'enforced' if found.cgroup_v2 else 'NOT enforced'}"
        f" - {found.cgroup_detail}",
        "",
        table(
            [[k, v["memory"], v["cpu"], v["gpu"]] for k, v in backends.items()],
            ["BACKEND", "MEMORY", "CPU", "GPU"],
        ),
        "",
        "advisory = the server gets MEM_LIMIT/CPU_LIMIT in its environment "
        "(jupyter-resource-usage shows them) but nothing stops it from using more.",
        f"kernel specs available to tiers: {', '.join(data['kernels']) or 'none'}",
    ]
    output(data, as_json, "\n".join(lines))


def isolation_status() -> dict:
    """Whether local user servers run as their own Unix accounts (docs/security.md)."""
    from fedhub import accounts

    if accounts.can_isolate():
        return {
            "isolated": True,
            "summary": "ISOLATED - each user's server runs as its own account "
            f"({accounts.ACCOUNT_PREFIX}<username>), homes 0700",
        }
    return {
        "isolated": False,
        "summary": "NOT ISOLATED - fedhub is not root, so every user's server runs as "
        f"uid {os.geteuid()} (the hub's account) and can read the hub's files",
    }
