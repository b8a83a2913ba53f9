"""Reading a federation's results, and binding a member's dataset to it (blocking work)."""

from __future__ import annotations

from sqlalchemy import select

from fedhub.db import session_scope
from fedhub.errors import InvalidRequest, NotFound

from .models import FederationMemberMetrics, FederationRound


def bind_dataset(tenant: str, ref: str, schema: dict | None) -> tuple[str, dict]:
    """``(name@version, schema)`` of ``tenant``'s dataset ``ref`` (``name``, ``name@3``,
    ``tenant/name@latest``), pinned to a version, after checking it against ``schema``
    (None: the dataset's own schema becomes the federation's).

    A dataset that does not match is a 400 naming every difference.
    """
    from fedhub.datasets import DatasetError, DatasetNotFound, DatasetRef, DatasetStore, Schema

    text = ref if DatasetRef.is_tenant(ref) else f"tenant/{ref}"
    store = DatasetStore()
    try:
        wanted = Schema.from_dict(schema) if schema is not None else None
    except DatasetError as e:
        raise InvalidRequest(f"schema: {e}", details={"field": "schema"}) from None
    try:
        parsed = DatasetRef.parse(text)
        _, version = store.resolve(tenant, parsed)
        mine = store.schema(tenant, parsed.name, version)
    except DatasetNotFound as e:
        raise NotFound(f"dataset: {e}") from None
    except DatasetError as e:
        raise InvalidRequest(f"dataset: {e}", details={"field": "dataset"}) from None
    wanted = wanted or mine
    problems = wanted.matches(mine)
    if problems:
        raise InvalidRequest(
            f"dataset {parsed.name}@{version} does not match the federation's schema: "
            + "; ".join(problems),
            details={"differences": problems},
        )
    return f"{parsed.name}@{version}", wanted.to_dict()


def rounds(db_url: str, fed_id: str) -> list[dict]:
    with session_scope(db_url) as s:
        return list(
            s.scalars(
                select(FederationRound.record)
                .where(FederationRound.federation_id == fed_id)
                .order_by(FederationRound.round)
            )
        )


def member_metrics(db_url: str, fed_id: str, tenant: str | None) -> dict:
    """``{"rounds": [...], "local_only": {...} | None}`` of ``tenant`` (None: every member's,
    as ``{"members": {tenant: ...}}``, for platform admins). Round 0 holds the local-only
    baseline when the task asked for one."""
    with session_scope(db_url) as s:
        q = (
            select(FederationMemberMetrics.tenant, FederationMemberMetrics.round,
                   FederationMemberMetrics.metrics)
            .where(FederationMemberMetrics.federation_id == fed_id)
            .order_by(FederationMemberMetrics.round)
        )  # fmt: skip
        if tenant is not None:
            q = q.where(FederationMemberMetrics.tenant == tenant)
        rows = s.execute(q).all()
    by_tenant: dict[str, dict] = {}
    for t, rnd, metrics in rows:
        out = by_tenant.setdefault(t, {"rounds": [], "local_only": None})
        if rnd == 0:
            out["local_only"] = metrics.get("local_only")
        else:
            out["rounds"].append(metrics)
    if tenant is not None:
        return by_tenant.get(tenant, {"rounds": [], "local_only": None})
    return {"members": by_tenant}
