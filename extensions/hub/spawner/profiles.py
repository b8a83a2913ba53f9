"""Profiles: the spawn form a tier allows, and how a profile maps onto each backend.

Everything here is a pure function of the tier catalogue, so the mapping onto
KubeSpawner, DockerSpawner and SystemdSpawner traits is tested without those
packages installed.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from fedhub.quotas import GIB
from fedhub.tiers import Profile, Tier

# backend kinds, found by class name in the spawner's MRO (no import needed)
BACKENDS = {
    "KubeSpawner": "kubernetes",
    "DockerSpawner": "docker",
    "SystemdSpawner": "systemd",
    "LocalProcessSpawner": "local",
}


def backend_kind(cls: type) -> str:
    """``kubernetes``, ``docker``, ``systemd``, ``local`` or ``other`` for a spawner class."""
    for klass in cls.__mro__:
        if klass.__name__ in BACKENDS:
            return BACKENDS[klass.__name__]
    return "other"


def backend_settings(
    kind: str, profile: Profile, guarantee_fraction: float = 0.5
) -> dict[str, Any]:
    """Spawner trait values that apply ``profile`` on a backend of ``kind``.

    Limits are the profile's size; guarantees (requests) are ``guarantee_fraction``
    of it, so a node can be packed a little above its reserved size. Only traits
    the backend has are set by the caller, so extra keys are harmless.
    """
    mem = int(profile.memory_gb * GIB)
    settings: dict[str, Any] = {"mem_limit": mem, "cpu_limit": float(profile.cpu)}
    if kind in ("kubernetes", "docker"):
        settings["mem_guarantee"] = int(mem * guarantee_fraction)
        settings["cpu_guarantee"] = float(profile.cpu) * guarantee_fraction
        if profile.image:
            settings["image"] = profile.image
    if kind == "kubernetes" and profile.gpu:
        settings["extra_resource_limits"] = {"nvidia.com/gpu": str(profile.gpu)}
        settings["extra_resource_guarantees"] = {"nvidia.com/gpu": str(profile.gpu)}
    if kind == "docker" and profile.gpu:
        settings["extra_host_config"] = {
            "device_requests": [
                {"Driver": "nvidia", "Count": profile.gpu, "Capabilities": [["gpu"]]}
            ]
        }
    return settings


def enforcement(kind: str, *, rlimit: bool = False, cgroup: bool = False) -> dict[str, str]:
    """Who enforces memory, CPU and GPU on a backend (shown in docs and ``fedhub doctor``)."""
    if kind == "kubernetes":
        return {"memory": "kubelet (cgroup)", "cpu": "kubelet (CFS quota)", "gpu": "device plugin"}
    if kind == "docker":
        return {"memory": "docker (cgroup)", "cpu": "docker (CFS quota)", "gpu": "nvidia runtime"}
    if kind == "systemd":
        return {"memory": "systemd MemoryMax", "cpu": "systemd CPUQuota", "gpu": "advisory"}
    if kind == "local":
        memory = "cgroup v2 memory.max" if cgroup else ("RLIMIT_AS" if rlimit else "advisory")
        return {
            "memory": memory,
            "cpu": "cgroup v2 cpu.max" if cgroup else "advisory",
            "gpu": "advisory",
        }
    return {"memory": "advisory", "cpu": "advisory", "gpu": "advisory"}


def options_from_form(form_data: Mapping[str, list[str]]) -> dict[str, str]:
    """Form fields to ``user_options``; validation happens in ``apply_user_options``."""
    profile = (form_data.get("profile") or [""])[0]
    return {"profile": profile} if profile else {}


def render_form(
    tier: Tier,
    profiles: Mapping[str, Profile],
    *,
    compute_used: float | None = None,
    selected: str | None = None,
) -> str:
    """The spawn form: one radio button per profile of the tenant's tier, and its budget."""
    selected = selected if selected in tier.profiles else tier.profiles[0]
    rows = []
    for name in tier.profiles:
        p = profiles[name]
        checked = " checked" if name == selected else ""
        extra = f", {p.gpu} GPU" if p.gpu else ""
        desc = f" ({html.escape(p.description)})" if p.description else ""
        rows.append(
            f'<div class="radio"><label><input type="radio" name="profile" '
            f'value="{html.escape(name)}"{checked}> <strong>{html.escape(p.display_name)}</strong>'
            f" &mdash; {p.cpu:g} CPU, {p.memory_gb:g} GB{extra}{desc}</label></div>"
        )
    budget = ""
    if compute_used is not None:
        limit = tier.compute_hours_per_month
        pct = 100 * compute_used / limit if limit else 100
        cls = "alert-danger" if pct >= 100 else "alert-warning" if pct >= 80 else "alert-info"
        budget = (
            f'<div class="alert {cls}" id="fedhub-budget">Your organisation has used '
            f"{compute_used:.1f} of {limit:g} compute hours this month ({pct:.0f}%).</div>"
        )
    kernels = ", ".join(html.escape(k) for k in tier.kernels)
    return (
        f"{budget}<p>Server sizes of the {html.escape(tier.display_name)} tier "
        f"(kernels: {kernels}):</p>" + "\n".join(rows)
    )
