"""The base of fedhub's endpoints in the hub's REST API (``/hub/api/fedhub/...``).

They are JupyterHub API handlers (the hub's token and cookie authentication, its
scopes) that answer like fedhub's services: refusals are fedhub's typed errors
(:mod:`fedhub.errors`), every error body is ``{"error": {"code", "message"}}``
(:class:`fedhub.web.JSONErrors`), and the body of a write is a JSON object.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler

from fedhub.errors import InvalidRequest
from fedhub.web import JSONErrors


class FedhubAPIHandler(JSONErrors, APIHandler):
    """A hub API handler with fedhub's error shape and the tenant store."""

    @property
    def store(self):
        return self.authenticator.store

    def body(self) -> dict:
        """The request's JSON object (400 for anything else)."""
        try:
            data = json.loads(self.request.body or b"{}")
        except (ValueError, RecursionError):
            raise InvalidRequest("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("request body must be a JSON object")
        return data
