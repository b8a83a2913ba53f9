"""Validation of tenancy input, and the tenancy revision counter."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import update
from sqlalchemy.orm import Session

from fedhub.errors import InvalidRequest
from fedhub.tenancy import passwords
from fedhub.tenancy.models import Revision

EMAIL_RE = re.compile(r"^[^@\s]+@([a-z0-9.-]+\.[a-z]{2,})$", re.IGNORECASE)
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,62}$")
DOMAIN_RE = re.compile(r"^[a-z0-9.-]+\.[a-z]{2,}$")


def bump_revision(session: Session) -> None:
    """Count a tenancy change (the hub's mirror watches this counter)."""
    session.execute(update(Revision).where(Revision.id == 1).values(value=Revision.value + 1))


def validate_slug(slug: str) -> str:
    if not SLUG_RE.match(slug or ""):
        raise InvalidRequest(
            f"invalid tenant slug {slug!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return slug


def validate_username(name: str) -> str:
    if not USERNAME_RE.match(name or ""):
        raise InvalidRequest(
            f"invalid username {name!r}: use lowercase letters, digits and . _ @ -"
        )
    return name


def validate_domains(domains: Iterable[str]) -> list[str]:
    result = []
    for d in domains:
        d = d.strip().lower().lstrip("@")
        if not DOMAIN_RE.match(d):
            raise InvalidRequest(f"invalid email domain {d!r}")
        result.append(d)
    return sorted(set(result))


def validate_password(password: str) -> str:
    if len(password or "") < passwords.MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"password too short: use at least {passwords.MIN_PASSWORD_LENGTH} characters"
        )
    return password
