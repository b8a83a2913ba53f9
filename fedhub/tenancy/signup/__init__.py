"""Invitations and self-service sign-up (part of :class:`TenantStore`).

Nobody joins a tenant on their own: a sign-up needs an invitation (a one-time
code whose SHA-256 alone is stored) or an email address in a domain the tenant
allows. The tenant's ``max_users`` applies either way.

An email address proves nothing until its owner answers, so a domain sign-up is
only a :class:`SignupRequest` (no membership, no credential: login, the hub and
the services do not know the user). What makes it an account is the tenant's
``signup_policy``:

- ``verify_email``: following the link sent to the address (a single-use token,
  valid ``link_valid_for``; only its SHA-256 is stored);
- ``admin_approval``: the link, then a tenant admin's approval;
- ``invitation_only``: nothing; domain sign-up is refused.

The store never sends mail: :meth:`SignupMixin.sign_up` returns the token for
the caller (the hub's sign-up page) to put in a link and send.

The applicant's side (signing up, following the link) is in
:mod:`.applying`; the tenant admin's side (invitations, the policy, reviewing
requests) in :mod:`.review`; invitations (emailed by the hub's tenancy API, resent,
revoked) in :mod:`.invitations`; what both share in :mod:`.outcomes`.
"""

from fedhub.tenancy.signup.applying import ApplicantMixin
from fedhub.tenancy.signup.invitations import InvitationMixin, InvitationView
from fedhub.tenancy.signup.outcomes import (
    ACTIVE,
    DEFAULT_LINK_VALIDITY,
    MAX_CONFIRM_ATTEMPTS,
    LinkExpired,
    PendingSignup,
    ResendTooSoon,
    SignupClosed,
    SignupResult,
    token_hash,
)
from fedhub.tenancy.signup.review import ReviewMixin

__all__ = [
    "ACTIVE",
    "InvitationView",
    "DEFAULT_LINK_VALIDITY",
    "MAX_CONFIRM_ATTEMPTS",
    "LinkExpired",
    "PendingSignup",
    "ResendTooSoon",
    "SignupClosed",
    "SignupMixin",
    "SignupResult",
    "token_hash",
]


class SignupMixin(ApplicantMixin, ReviewMixin, InvitationMixin):
    """The invitation and sign-up methods of :class:`fedhub.tenancy.store.TenantStore`."""
