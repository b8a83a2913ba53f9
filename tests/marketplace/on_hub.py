"""What the marketplace's hub tests share: the API's path, an asset to publish, the
module hub (PostgreSQL, so the service works under row-level security) and its tokens."""

from __future__ import annotations

import base64
import uuid

from tests.harness import wait_for
from tests.marketplace.conftest import ALGORITHM

API = "/services/marketplace/api/v1/"
SLUG = "fedprox-variant"
REF = f"market/{SLUG}@1.0.0"
ASSET = {
    "name": "FedProx variant",
    "slug": SLUG,
    "asset_type": "algorithm",
    "category": "strategies",
    "description": "FedProx with a smaller proximal term. <script>alert(1)</script>",
    "tags": ["fedprox"],
    "licence": "commercial",
    "price": "49.99",
    "filename": "variant.py",
    "content_base64": base64.b64encode(ALGORITHM).decode(),
}


def start_hub(hub_factory, postgres, *args: str):
    """A hub on a new PostgreSQL database, once its marketplace service answers."""
    db_url = postgres.create_database(f"market_{uuid.uuid4().hex[:8]}")
    hub = hub_factory(db_url=db_url, args=list(args))
    wait_for(lambda: hub.api("GET", API + "openapi.json").status_code == 200, 120, 0.3,
             "the marketplace service")  # fmt: skip
    return hub


def tokens(hub) -> dict[str, str]:
    people = ("admin", "acme-admin", "alice", "dave", "globex-admin", "bob", "carol")
    return {name: hub.token(name) for name in people}


def call(hub, token, method, path, **kw):
    r = hub.api(method, API + path, token, **kw)
    if r.status_code >= 400:
        body = r.json()
        assert set(body["error"]) >= {"code", "message"}, body  # fedhub's error shape
    return r


def code(r) -> str:
    return r.json()["error"]["code"]


def run_finished(hub, token: str, exp_id: str) -> dict | None:
    """The experiment's record once it has ended, else None (for ``wait_for``)."""
    d = hub.api("GET", f"/services/experiments/api/v1/experiments/{exp_id}", token).json()
    return d if d["status"] in ("completed", "failed", "cancelled") else None
