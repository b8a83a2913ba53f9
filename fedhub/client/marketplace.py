"""The marketplace from a notebook: search, publish, buy, install and review assets.

    import fedhub
    fedhub.marketplace.search("fedprox", type="algorithm")
    fedhub.marketplace.publish("FedProx variant", "algorithm", "strategy.py", price="49.99")
    fedhub.marketplace.purchase("fedprox-variant")       # tenant admins: one Idempotency-Key,
                                                         # kept across retries
    fedhub.marketplace.install("fedprox-variant")        # the licensed file, into your home
    model.load_state_dict(fedhub.marketplace.install("cifar-resnet"))  # a model: its weights
    fedhub.marketplace.review("fedprox-variant", 5, "Converges in half the rounds.")

Every refusal raises :class:`fedhub.client.FedhubAPIError` with the service's code and
message (``not_entitled`` names the asset), as the API answers it.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import requests

from . import FedhubAPIError, request

__all__ = ["search", "asset", "publish", "purchase", "entitlements", "install", "review"]

SERVICE = "marketplace"


def _call(method: str, path: str, **kwargs) -> Any:
    return request(method, path, service=SERVICE, **kwargs)


def search(query: str = "", **filters: Any) -> list[dict]:
    """Listed assets matching ``query`` (name, description, tags); filters: ``type``,
    ``category``, ``licence``, ``min_price``, ``max_price``, ``min_rating``, ``sort``
    (relevance, rating, downloads, newest), ``limit``, ``offset``."""
    params = {"q": query, **{k: str(v) for k, v in filters.items() if v is not None}}
    return _call("GET", "api/v1/search", params=params)["assets"]


def asset(slug: str) -> dict:
    """An asset's card: description, licence, price, versions, rating."""
    return _call("GET", f"api/v1/assets/{slug}")


def publish(
    name: str,
    asset_type: str,
    path: str | Path,
    *,
    version: str = "1.0.0",
    changelog: str = "",
    **fields: Any,
) -> dict:
    """Publish the file at ``path`` as a new asset (it waits for a platform admin's review).

    ``fields``: ``slug``, ``category``, ``description`` (Markdown), ``tags`` (list),
    ``licence`` (free, academic, commercial or ``{"custom": text}``), ``price`` (a decimal
    string), ``pricing`` (one_off or monthly), ``per_seat``; a dataset's ``label_column``
    (default: its last column, ``y`` in an ``.npz``) and default ``partition``
    (``{"name": "dirichlet", "alpha": 0.5}`` unless given). A dataset that does not parse,
    or a model that does not load as a state dict, is refused (400) before anything is kept.
    """
    path = Path(path)
    body = {
        "name": name,
        "asset_type": asset_type,
        "version": version,
        "changelog": changelog,
        "filename": path.name,
        "content_base64": base64.b64encode(path.read_bytes()).decode(),
        **fields,
    }
    return _call("POST", "api/v1/assets", json=body)


def purchase(
    slug: str,
    *,
    version: str | None = None,
    seat: str | None = None,
    idempotency_key: str | None = None,
    retries: int = 3,
) -> dict:
    """Buy ``slug`` for your organisation (tenant admins). One key for every attempt, so a
    retry after a lost answer returns the first purchase instead of buying twice."""
    key = idempotency_key or str(uuid.uuid4())
    body = {k: v for k, v in {"version": version, "seat": seat}.items() if v is not None}
    for attempt in range(retries + 1):
        try:
            return _call(
                "POST", f"api/v1/assets/{slug}/purchase", json=body,
                headers={"Idempotency-Key": key},
            )  # fmt: skip
        except FedhubAPIError as e:
            if e.code != "unreachable" or attempt == retries:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def entitlements() -> list[dict]:
    """Your organisation's licences."""
    return _call("GET", "api/v1/entitlements")["entitlements"]


def install(
    slug: str, version: str | None = None, *, into: str | Path | None = None
) -> Path | dict[str, Any]:
    """Copy the licensed version's file into your home (or ``into``); returns its path, or
    for a **model** its weights: the state dict, loaded on the CPU with
    ``torch.load(weights_only=True)`` (``model.load_state_dict(install("my-model"))``).

    A notebook lands as ``<slug>-<version>.ipynb`` in the current folder; any other asset
    as ``marketplace/<slug>/<version>/<file>``. The licence is checked (and the use
    counted) by the service every time; an existing file is never overwritten (the same
    file installed again is left as it is; a changed one is a ``FileExistsError``).
    """
    params = {"version": version} if version else None
    r: requests.Response = _call("GET", f"api/v1/assets/{slug}/content", params=params, raw=True)
    got = r.headers.get("X-Fedhub-Version", version or "latest")
    filename = r.headers.get("X-Fedhub-Filename", slug)
    kind = r.headers.get("X-Fedhub-Asset-Type", "")
    base = Path(into) if into is not None else Path.cwd()
    if kind == "notebook":
        target = base / f"{slug}-{got}.ipynb"
    else:
        target = base / "marketplace" / slug / got / Path(filename).name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target.is_file() and target.read_bytes() == r.content):
        with open(target, "xb") as f:  # never overwrite a file the user may have changed
            f.write(r.content)
    if kind == "model":
        return load_weights(target)
    return target


def load_weights(path: str | Path) -> dict[str, Any]:
    """A model asset's state dict from its file: tensors only (``weights_only=True``, so
    nothing in the file runs), on the CPU."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"loading a model's weights needs torch (pip install 'fedhub[fl]'); the file is "
            f"at {path}"
        ) from None
    return torch.load(path, weights_only=True, map_location="cpu")


def review(slug: str, stars: int, text: str = "") -> dict:
    """Rate an asset your organisation bought: 1-5 stars and a text (one per user)."""
    return _call("POST", f"api/v1/assets/{slug}/reviews", json={"stars": stars, "text": text})
