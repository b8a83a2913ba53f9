"""Typed, user-facing errors.

Every refusal fedhub makes has one exception type here. Each carries a stable
``code`` (for programs), an HTTP ``status`` and a ``message`` that is safe to
show a user: it never contains a secret. Handlers map them once to
``{"error": {"code": ..., "message": ...}}`` and the CLI to one line and a
non-zero exit.
"""

from __future__ import annotations

from typing import Any


class FedhubError(Exception):
    """Base of every error fedhub shows to a user.

    A subclass names its ``code`` and ``status`` in its class line
    (``class NotFound(FedhubError, code="not_found", status=404)``) so that the
    whole table of refusals reads as a table; a subclass that names neither
    inherits its parent's (a more specific kind of the same refusal).
    """

    code = "fedhub_error"
    status = 400

    def __init_subclass__(cls, *, code: str | None = None, status: int | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status

    def __init__(self, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class ConfigError(FedhubError, code="config_error", status=500):
    """A configuration file or value is invalid; the message names the file and key."""


class InvalidRequest(FedhubError, code="invalid_request", status=400):
    """The request is malformed or asks for something that cannot be."""


class NotFound(FedhubError, code="not_found", status=404):
    """No such thing, or one the caller may not see (tenants never see each other)."""


class Conflict(FedhubError, code="conflict", status=409):
    """The thing exists already, or the request contradicts the current state."""


class Forbidden(FedhubError, code="forbidden", status=403):
    """The caller is known but may not do this."""


class TenantSuspended(Forbidden, code="tenant_suspended"):
    """The caller's organisation is suspended."""


class QuotaExceeded(FedhubError, code="quota_exceeded", status=429):
    """A tier limit refuses the request; details carry limit, usage and what to do."""


class AuthenticationFailed(FedhubError, code="authentication_failed", status=403):
    """A login refused (the message never says whether the name or the password was wrong)."""


class AccountLocked(AuthenticationFailed, code="account_locked"):
    """A login refused because the account is locked."""
