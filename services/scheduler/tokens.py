"""The owner's token of a run: made by the hub for that run, with the owner's scopes, and
revoked when the run ends.

The notebook calls fedhub's services (``fedhub.client``) as its owner with
``$JUPYTERHUB_API_TOKEN``, as in the owner's server. The service's own hub role
(``scheduler-service``: ``tokens``) lets it ask the hub for a token of another user; the hub
gives the token only scopes the owner holds, so it is the owner's fedhub role's scopes in
the owner's tenant (:func:`fedhub.tenancy.scopes.role_scopes`) plus ``access:services``,
and it expires shortly after the run's timeout even if revoking fails.
"""

from __future__ import annotations

import logging
import os

import requests

from fedhub.tenancy import scopes
from fedhub.tenancy.store import TenantStore

#: seconds a run's token outlives the run's timeout (revoked at the end anyway)
GRACE = 120


class RunTokens:
    def __init__(self, store: TenantStore, service_urls: dict[str, str], log: logging.Logger):
        self.store = store
        self.service_urls = service_urls  # FEDHUB_<NAME>_URL for the run's environment
        self.log = log
        self.api_url = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        self.token = os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def _call(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.api_url}{path}", timeout=10,
                                headers={"Authorization": f"token {self.token}"}, **kw)  # fmt: skip

    def env_for(self, username: str, tenant: str, timeout: float) -> tuple[dict, str | None]:
        """The run's environment (the hub's API, the services' URLs, the owner's token) and
        the token's id, to revoke it when the run ends."""
        env = {"JUPYTERHUB_API_URL": self.api_url, "JUPYTERHUB_USER": username,
               **self.service_urls}  # fmt: skip
        info = self.store.user(username)
        if not self.api_url or info is None:
            return env, None
        body = {
            "note": "scheduled run (fedhub scheduler)",
            "expires_in": int(timeout) + GRACE,
            "scopes": ["access:services", *scopes.role_scopes(info.role, tenant)],
        }
        r = self._call("POST", f"/users/{username}/tokens", json=body)
        if r.status_code != 201:
            # the run still happens; fedhub client calls in it will be refused
            self.log.warning("no token for %s's run: hub answered %s", username, r.status_code)
            return env, None
        env["JUPYTERHUB_API_TOKEN"] = r.json()["token"]
        return env, r.json()["id"]

    def revoke(self, token_id: str | None, username: str) -> None:
        if token_id:
            r = self._call("DELETE", f"/users/{username}/tokens/{token_id}")
            if r.status_code not in (204, 404):
                self.log.warning("could not revoke %s's run token: %s", username, r.status_code)
