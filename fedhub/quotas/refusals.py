"""Why a server may not start (part of :mod:`fedhub.quotas`): the refusals a user can act
on, one class per reason (``reason`` is the metrics label; the message names the limit, the
usage and what to do), and :func:`check_profile`, the tier's server sizes and GPUs.

:func:`fedhub.quotas.reserve` raises them; they are re-exported from :mod:`fedhub.quotas`.
"""

from __future__ import annotations

from typing import Self

from fedhub import limits
from fedhub.errors import FedhubError, Forbidden, InvalidRequest, QuotaExceeded
from fedhub.tenancy import teams
from fedhub.tiers import Profile, Tier


class SpawnRefused(FedhubError):
    """A server may not start; ``reason`` is the metrics label, the message says what to do."""

    reason = "refused"


class TenantSuspendedRefusal(SpawnRefused, Forbidden, code="tenant_suspended"):
    reason = "tenant_suspended"


class ProfileNotAllowed(SpawnRefused, InvalidRequest, code="profile_not_allowed"):
    reason = "profile_not_allowed"


UPGRADE_HINT = "or ask your organisation's administrator to upgrade the tier"


class LimitReached(SpawnRefused, QuotaExceeded):
    """A numeric tier limit is used up. Each kind names its tier key and a message
    template, so every such refusal carries the same details
    (:func:`fedhub.limits.details`) and says the usage, the limit and what to do."""

    limit: str  # the tier key (a fedhub.limits entry)
    template: str  # str.format fields: used, allowed, tier (display name), hint, and extras

    @classmethod
    def over(cls, tier: Tier, used: float, requested: float | None = None, **extra) -> Self:
        allowed = getattr(tier, cls.limit)
        message = cls.template.format(
            used=used, allowed=allowed, tier=tier.display_name, hint=UPGRADE_HINT, **extra
        )
        return cls(message, details=limits.details(cls.limit, allowed, used, requested))


class UserServerLimit(LimitReached):
    reason = "user_server_limit"
    limit = "max_servers_per_user"
    template = (
        "You already have {used} of the {allowed} servers the {tier} tier allows per user. "
        "Stop one of your servers (Home page) and try again, {hint}."
    )


class TenantServerLimit(LimitReached):
    reason = "tenant_server_limit"
    limit = "max_servers_per_tenant"
    template = (
        "Your organisation is running {used} of the {allowed} servers its {tier} tier "
        "allows. Try again when a colleague has stopped a server, {hint}."
    )


class ComputeBudgetExhausted(LimitReached):
    reason = "compute_hours"
    limit = "compute_hours_per_month"
    template = (
        "Your organisation has used {used:.2f} of the {allowed:g} compute hours (CPU-core "
        "hours) its {tier} tier includes this month. Servers can start again on {resume} "
        "(UTC), {hint}."
    )


class StorageOverQuota(LimitReached):
    reason = "storage_quota"
    limit = "storage_gb"
    template = (
        "Your organisation's home directories use {used:.3f} GB of the {allowed:g} GB its "
        "{tier} tier allows. Delete files to get under the limit, {hint}."
    )


class TeamLimitReached(SpawnRefused, QuotaExceeded):
    """A team quota (docs/organisations.md) is used up: the message names the team, the
    quota, the usage and what to do; ``details`` name the team quota and the tier key it
    is carved out of."""

    quota: str  # a key of fedhub.tenancy.teams.QUOTA_KEYS
    template: str

    @classmethod
    def over(cls, team: teams.TeamView, used: float, requested: float | None = None, **extra):
        allowed = team.quotas[cls.quota]
        message = cls.template.format(team=team.name, used=used, allowed=allowed, **extra)
        details = {
            "limit": f"team.{cls.quota}",
            "team": team.name,
            "carved_from": teams.QUOTA_KEYS[cls.quota],
            "allowed": allowed,
            "used": used,
            "requested": requested,
        }
        return cls(message, details=details)


TEAM_HINT = "or ask your team lead to request a higher team quota"


class TeamServerLimit(TeamLimitReached):
    reason = "team_server_limit"
    quota = "servers"
    template = (
        "Your team {team} is running {used} of the {allowed} servers its team quota "
        "allows. Try again when a team mate has stopped a server, " + TEAM_HINT + "."
    )


class TeamComputeLimit(TeamLimitReached):
    reason = "team_compute_hours"
    quota = "compute_hours"
    template = (
        "Your team {team} has used {used:.2f} of the {allowed:g} compute hours (CPU-core "
        "hours) its team quota allows this month. Servers can start again on {resume} "
        "(UTC), " + TEAM_HINT + "."
    )


def check_profile(tier_name: str, tier: Tier, profile: str, spec: Profile | None = None) -> None:
    """Refuse a server size the tier does not list, or a GPU size without ``features.gpu``.

    ``spec`` is the profile's definition (for its GPUs); None skips the GPU check.
    """
    if profile not in tier.profiles:
        raise ProfileNotAllowed(
            f"The server size {profile!r} is not part of your organisation's "
            f"{tier.display_name} tier. Choose one of: {', '.join(tier.profiles)}, {UPGRADE_HINT}.",
            details=limits.details("profiles", list(tier.profiles), None, profile),
        )
    if spec is not None and spec.gpu and not tier.features.gpu:
        raise ProfileNotAllowed(
            f"The server size {profile!r} has GPUs, which your organisation's "
            f"{tier.display_name} tier does not include. Choose a size without GPUs, "
            f"{UPGRADE_HINT}.",
            details=limits.details("features.gpu", False, None, profile),
        )
