"""The notebook client of fedhub's services.

Works in any user server with no arguments: the tier spawner sets
``JUPYTERHUB_API_TOKEN`` (the user's token) and ``FEDHUB_EXPERIMENTS_URL`` (the experiments
service's direct URL). Elsewhere, call :func:`configure` or set those two variables.

    import fedhub
    exp = fedhub.experiments.submit(dataset="synthetic", strategy="fedprox", mu=1.0)
    fedhub.quota()
"""

from __future__ import annotations

import os
from typing import Any

import requests

__all__ = ["FedhubAPIError", "configure", "quota", "service_url", "request", "paged"]

_overrides: dict[str, str] = {}


class FedhubAPIError(Exception):
    """A fedhub service refused or failed a request; ``str()`` is the service's message."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def __repr__(self) -> str:
        return f"FedhubAPIError({self.status}, {self.code!r}, {self.message!r})"


def configure(url: str | None = None, token: str | None = None) -> None:
    """Point the client at a service URL and/or token (outside a fedhub user server)."""
    if url:
        _overrides["url"] = url if url.endswith("/") else url + "/"
    if token:
        _overrides["token"] = token


def _token() -> str:
    token = _overrides.get("token") or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise FedhubAPIError(
            401,
            "no_token",
            "no JupyterHub token: run this inside a fedhub server, set JUPYTERHUB_API_TOKEN"
            " or call fedhub.client.configure(token=...)",
        )
    return token


def service_url(name: str = "experiments") -> str:
    """The service's base URL: ``$FEDHUB_<NAME>_URL``, else one derived from the hub's."""
    if name == "experiments" and _overrides.get("url"):
        return _overrides["url"]
    explicit = os.environ.get(f"FEDHUB_{name.upper()}_URL")
    if explicit:
        return explicit if explicit.endswith("/") else explicit + "/"
    public = os.environ.get("JUPYTERHUB_PUBLIC_URL")
    if public:
        return public.rstrip("/") + f"/services/{name}/"
    api = os.environ.get("JUPYTERHUB_API_URL")
    if api:
        # ask the hub where the service listens; then fall back to the hub's own host
        try:
            r = requests.get(
                f"{api.rstrip('/')}/services/{name}",
                headers={"Authorization": f"token {_token()}"},
                timeout=5,
            )
            if r.ok and r.json().get("url"):
                return r.json()["url"].rstrip("/") + f"/services/{name}/"
        except (requests.RequestException, ValueError):
            pass
        base = api.rstrip("/").removesuffix("/api").removesuffix("/hub")
        return f"{base}/services/{name}/"
    raise FedhubAPIError(
        0,
        "no_service_url",
        f"cannot find the {name} service: set FEDHUB_{name.upper()}_URL or call"
        " fedhub.client.configure(url=...)",
    )


def request(method: str, path: str, *, service: str = "experiments", **kwargs) -> Any:
    """Call a fedhub service; JSON in and out; a refusal raises :class:`FedhubAPIError`."""
    url = service_url(service) + path.lstrip("/")
    headers = kwargs.pop("headers", {})
    headers["Authorization"] = f"token {_token()}"
    raw = kwargs.pop("raw", False)
    try:
        r = requests.request(
            method, url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs
        )
    except requests.ConnectionError as e:
        raise FedhubAPIError(
            0, "unreachable", f"the {service} service is unreachable ({url}): {e}"
        ) from None
    if r.status_code >= 400:
        raise _error(r)
    if raw or kwargs.get("stream"):
        return r
    return r.json() if r.content else None


def paged(
    path: str, key: str, limit: int | None, params: dict[str, Any] | None = None
) -> list[dict]:
    """The first ``limit`` items (None: all of them) of a list endpoint that pages with
    ``?limit=&cursor=`` and answers ``{key: [...], "next_cursor": ...}``; asks for at most
    500 a page (the services' largest)."""
    items: list[dict] = []
    params = dict(params or {})
    while limit is None or len(items) < limit:
        if limit is not None:
            params["limit"] = min(limit - len(items), 500)
        data = request("GET", path, params=params)
        items.extend(data[key])
        if not data.get("next_cursor"):
            break
        params["cursor"] = data["next_cursor"]
    return items if limit is None else items[:limit]


def _error(r: requests.Response) -> FedhubAPIError:
    try:
        err = r.json()["error"]
        return FedhubAPIError(
            r.status_code, err.get("code", ""), err["message"], err.get("details")
        )
    except (ValueError, KeyError, TypeError):
        return FedhubAPIError(r.status_code, f"http_{r.status_code}", r.text[:500] or r.reason)


def quota(tenant: str | None = None) -> dict:
    """Your tenant's tier, experiment limits and usage this month."""
    return request("GET", "api/v1/quota", params={"tenant": tenant} if tenant else None)
