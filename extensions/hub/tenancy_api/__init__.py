"""The tenancy API and pages: organisations running themselves (docs/organisations.md).

    /hub/api/fedhub/tenants[/<slug>]            tenants (platform admins), suspend/resume
    /hub/api/fedhub/tenants/<slug>/members      members and roles
    /hub/api/fedhub/tenants/<slug>/invitations  invitations by email, resend, revoke
    /hub/api/fedhub/tenants/<slug>/teams        teams, their members, lead and quotas
    /hub/api/fedhub/requests                    approval requests (one mechanism)
    /hub/api/fedhub/onboard, /hub/onboard       self-service onboarding
    /hub/fedhub/console, /hub/fedhub/platform   the tenant admin's and platform admin's consoles

Each module's ``handlers(authenticator)`` returns its routes; the authenticator adds them
all with :func:`install`.
"""

from __future__ import annotations

from fedhub.extensions.hub.tenancy_api import (
    approvals_api,
    consoles,
    members_api,
    onboarding,
    teams_api,
)

MODULES = (members_api, approvals_api, teams_api, onboarding, consoles)


def install(authenticator) -> list[tuple]:
    """The routes of every tenancy module, to put before the hub's own."""
    return [route for module in MODULES for route in module.handlers(authenticator)]
