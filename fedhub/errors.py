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
    """Base of every error fedhub shows to a user."""

    code = "fedhub_error"
    status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class ConfigError(FedhubError):
    """A configuration file or value is invalid; the message names the file and key."""

    code = "config_error"
    status = 500


class InvalidRequest(FedhubError):
    code = "invalid_request"
    status = 400


class NotFound(FedhubError):
    code = "not_found"
    status = 404


class Conflict(FedhubError):
    code = "conflict"
    status = 409


class Forbidden(FedhubError):
    code = "forbidden"
    status = 403


class TenantSuspended(Forbidden):
    code = "tenant_suspended"


class QuotaExceeded(FedhubError):
    """A tier limit refuses the request; details carry limit, usage and what to do."""

    code = "quota_exceeded"
    status = 429


class AuthenticationFailed(FedhubError):
    code = "authentication_failed"
    status = 403


class AccountLocked(AuthenticationFailed):
    code = "account_locked"
