"""IP allowlists: the networks a tenant's members may log in from.

A tenant admin of a tier with ``security.ip_allowlist`` stores a list of CIDRs
(``fedhub security allowlist set``, ``PUT /hub/api/fedhub/tenants/<slug>/ip-allowlist``).
An empty list means no restriction. The hub's authenticators (local and OIDC) call
:func:`check_login_address` after the credentials are right and before the login
completes, so a refusal can say why without telling a stranger whether a name exists.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from fedhub.errors import Forbidden, InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: More networks than this is a misuse (and would make every login scan a long list).
MAX_NETWORKS = 256


class AddressNotAllowed(Forbidden):
    """A login from outside the tenant's allowlisted networks."""

    code = "ip_not_allowed"


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    """The networks of ``cidrs`` (``10.0.0.0/8``, ``2001:db8::/32``, or a bare address).

    Host bits must be zero (``10.0.0.1/8`` is refused, it is most likely a typo) and the
    message names the value that is wrong.
    """
    networks = []
    for raw in cidrs:
        if not isinstance(raw, str):
            raise InvalidRequest(f"invalid CIDR {raw!r}: expected a string like '10.0.0.0/8'")
        try:
            networks.append(ipaddress.ip_network(raw.strip()))
        except ValueError as e:
            raise InvalidRequest(f"invalid CIDR {raw!r}: {e}") from None
    if len(networks) > MAX_NETWORKS:
        raise InvalidRequest(f"at most {MAX_NETWORKS} networks per tenant, not {len(networks)}")
    return networks


def normalize(cidrs: Iterable[str]) -> list[str]:
    """The stored form: canonical, without duplicates, in a stable order."""
    networks = set(parse_networks(cidrs))
    return [str(n) for n in sorted(networks, key=lambda n: (n.version, n))]


def address_allowed(cidrs: Sequence[str], address: str | None) -> bool:
    """True when ``address`` is in one of ``cidrs``, or there are no ``cidrs`` at all."""
    if not cidrs:
        return True
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return False  # an unknown address cannot be shown to be inside
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in parse_networks(cidrs))


def check_login_address(tenant: str, cidrs: Sequence[str], address: str | None) -> None:
    """Refuse a login to ``tenant`` from ``address`` outside its allowlisted networks."""
    if not address_allowed(cidrs, address):
        raise AddressNotAllowed(
            f"logins to {tenant} are allowed only from its allowlisted networks;"
            f" your address is {address or 'unknown'}",
            details={"tenant": tenant, "address": address},
        )
