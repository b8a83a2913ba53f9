"""The tier layer over KubeSpawner: what a tenant's tier makes of a user's pod and volume.

A server on Kubernetes gets, from the tenant's tier and the profile the user picked:

- the profile's limits and guarantees (:func:`fedhub.extensions.hub.spawner.profiles.backend_settings`),
  its image and its node selector (``node_selector`` in ``tiers.yaml``);
- the labels ``fedhub.io/tenant``, ``fedhub.io/tier`` and ``fedhub.io/profile`` on the pod
  and on the user's volume, so that network policies, quotas and cost reports can
  select a tenant's pods;
- a PersistentVolumeClaim per user (``storage_pvc_ensure``) of the tier's ``storage_gb``
  (a tenant's override included): one user can never hold more than the whole tenant may.

Everything here is a pure function of the tier catalogue, except :class:`KubernetesTierMixin`,
which the tier spawner puts between itself and KubeSpawner. Nothing imports kubespawner:
the backend is recognised by class name, as in :mod:`.profiles`. The Helm values of a
deployment (:mod:`fedhub.deploy.helm`) are built from the same functions, so the
``profile_list`` an operator installs and what the tier layer sets never disagree.

No secret goes into a label or an annotation: only the tenant's slug, the tier's and the
profile's names, which users see on the spawn page anyway.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fedhub.tiers import Profile, Tier

from . import profiles

LABEL_TENANT = "fedhub.io/tenant"
LABEL_TIER = "fedhub.io/tier"
LABEL_PROFILE = "fedhub.io/profile"

_LABEL_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(text: str) -> str:
    """``text`` as a valid Kubernetes label value (63 characters, alphanumeric at both ends)."""
    return _LABEL_BAD.sub("-", text)[:63].strip("-_.")


def quantity_gi(gb: float) -> str:
    """A size in GB (fedhub's GiB, :data:`fedhub.quotas.GIB`) as a Kubernetes quantity."""
    return f"{gb:g}Gi"


def profile_settings(profile: Profile, guarantee_fraction: float) -> dict[str, Any]:
    """KubeSpawner trait values of one server size: limits, guarantees, image, node selector."""
    settings = profiles.backend_settings("kubernetes", profile, guarantee_fraction)
    if profile.node_selector:
        settings["node_selector"] = dict(profile.node_selector)
    return settings


def tier_labels(tenant: str | None, tier_name: str | None, profile_name: str) -> dict[str, str]:
    """The labels of a tenant's pod and volume (no tenant for a platform admin)."""
    labels = {LABEL_PROFILE: label_value(profile_name)}
    if tenant:
        labels[LABEL_TENANT] = label_value(tenant)
    if tier_name:
        labels[LABEL_TIER] = label_value(tier_name)
    return labels


def tier_settings(
    *,
    tenant: str | None,
    tier_name: str | None,
    tier: Tier | None,
    profile_name: str,
    profile: Profile,
    guarantee_fraction: float,
) -> dict[str, Any]:
    """Every KubeSpawner trait value the tier layer sets for one spawn.

    Mappings (labels, node selector, extra resources: :data:`MERGED_TRAITS`) are merged
    into what the operator configured (the Helm chart's common labels, its
    ``singleuser.nodeSelector``) by :class:`KubernetesTierMixin`; the rest replace it. Without a tier (a platform admin
    without a tenant) the volume keeps the operator's ``singleuser.storage.capacity``.
    """
    settings = profile_settings(profile, guarantee_fraction)
    labels = tier_labels(tenant, tier_name, profile_name)
    settings["extra_labels"] = labels
    settings["storage_extra_labels"] = labels
    if tier is not None:
        settings["storage_capacity"] = quantity_gi(tier.storage_gb)
        settings["storage_pvc_ensure"] = True
    return settings


#: every KubeSpawner trait the tier layer sets, for some profile or tier
TIER_TRAITS = (
    "mem_limit",
    "mem_guarantee",
    "cpu_limit",
    "cpu_guarantee",
    "image",
    "extra_resource_limits",
    "extra_resource_guarantees",
    "node_selector",
    "extra_labels",
    "storage_extra_labels",
    "storage_capacity",
    "storage_pvc_ensure",
)
#: those whose configured value is a mapping the tier's values are merged into
MERGED_TRAITS = (
    "extra_resource_limits",
    "extra_resource_guarantees",
    "node_selector",
    "extra_labels",
    "storage_extra_labels",
)


class KubernetesTierMixin:
    """Between the tier spawner and KubeSpawner: each spawn gets exactly its tier's values.

    JupyterHub keeps one spawner object per server across its starts, so every start
    begins again from the operator's configuration (the Helm values, read when the spawner
    was made), never from what the previous start set: a server started with the gpu
    profile and then with a small one has no GPU and no GPU node selector the second time.

    KubeSpawner applies its ``profile_list`` (``singleuser.profileList`` of the Helm chart)
    in ``load_user_options`` at the start of its own ``start``, after the tier layer has set
    the tier's values. The profile it applies is the one the tier layer validated (not
    whatever ``user_options`` held), and the tier's values are set again afterwards, so a
    stale profile list can add settings (tolerations, say) but never change a limit, a
    label or the volume's size. A profile missing from the list is applied from the tier
    alone.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._fedhub_k8s_configured = {
            trait: copy.deepcopy(getattr(self, trait))
            for trait in TIER_TRAITS
            if self.has_trait(trait)
        }
        self._fedhub_k8s_settings: dict[str, Any] = {}

    def apply_tier_settings(self, settings: dict[str, Any], *, over_current: bool = False) -> None:
        """The configured values, with ``settings`` merged in (mappings) or set (the rest).

        ``over_current``: merge into the current values instead (after the profile list,
        whose additions to a mapping, such as a label, stay).
        """
        self._fedhub_k8s_settings = dict(settings)
        for trait, configured in self._fedhub_k8s_configured.items():
            value = copy.deepcopy(getattr(self, trait) if over_current else configured)
            if trait in settings:
                if trait in MERGED_TRAITS:
                    value = {**(value or {}), **settings[trait]}
                else:
                    value = settings[trait]
            setattr(self, trait, value)

    async def load_user_options(self):
        chosen = getattr(self, "tier_profile", None)
        listed = (
            chosen is not None
            and not callable(self.profile_list)
            and any(p.get("slug") == chosen for p in self.profile_list or [])
        )
        options = {k: v for k, v in (self.user_options or {}).items() if k != "profile"}
        if listed:
            self.user_options = {**options, "profile": chosen}
            await super().load_user_options()
        elif chosen is not None:
            self.log.info("profile %s is not in profile_list: the tier's values apply", chosen)
            self.user_options, saved, self.profile_list = options, self.profile_list, []
            try:
                await super().load_user_options()
            finally:
                self.profile_list = saved
        else:
            await super().load_user_options()
        self.apply_tier_settings(self._fedhub_k8s_settings, over_current=True)
