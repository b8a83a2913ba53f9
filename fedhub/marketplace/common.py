"""What every part of the marketplace's store shares: who asks (:class:`Actor`), a
marketplace reference (:func:`parse_ref`), and the meter and approval kinds it writes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fedhub.errors import InvalidRequest
from fedhub.tenancy import scopes
from fedhub.tenancy.models import Role

#: the meter kind of a marketplace charge (fedhub.limits.METER_KINDS)
METER_KIND = "marketplace"
SOURCE = "marketplace"
#: the approval kind of a submitted version (fedhub.approvals.kinds.marketplace_publish)
PUBLISH_KIND = "marketplace_publish"
REF_RE = re.compile(r"^market/(?P<slug>[a-z0-9-]{1,63})(?:@(?P<version>[0-9A-Za-z.+-]{1,32}))?$")
KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass(frozen=True)
class Actor:
    """Who asks: a fedhub user (name, tenant, role); platform admins have no tenant."""

    name: str
    tenant: str | None
    role: Role | str | None

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.PLATFORM_ADMIN

    def can(self, permission: str) -> bool:
        return self.role is not None and scopes.allows(self.role, permission)


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``market/<slug>@<version>`` -> (slug, version); the version may be left out."""
    m = REF_RE.match(ref or "")
    if not m:
        raise InvalidRequest(f"not a marketplace reference: {ref!r} (market/<slug>@<version>)")
    return m.group("slug"), m.group("version")
