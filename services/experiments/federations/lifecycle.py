"""A federation's state machine, in the database: create, invite, join or decline, run,
cancel. Blocking (call off the event loop); each step is one transaction whose state
change is a conditional ``UPDATE`` (``WHERE state = ...``), so of two racing requests
exactly one wins and the other gets a 409.

Who may do what is decided by the handlers (:mod:`.handlers`); these functions check only
the state. On PostgreSQL the row-level security policies hold the same line underneath
(:data:`fedhub.db.rls.FEDERATION_WRITES`): no tenant's scope may list a tenant for a
federation, so creating one (which lists its owner) and inviting (which lists the invitee)
are platform work, done after the handler has checked the caller is an admin of the owner;
member rows are written by the owner or by the member itself (its answer).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fedhub.db import rls, session_scope, tenant_lock, utcnow
from fedhub.errors import Conflict, NotFound

from .models import (
    CANCELLED,
    DECLINED,
    DRAFT,
    ENDED,
    INVITED,
    JOINED,
    RUNNING,
    Federation,
    FederationMember,
    FederationTenant,
)

#: the fewest members that joined (a dataset bound) a federation needs to run
MIN_MEMBERS = 2


def create(
    db_url: str,
    *,
    tenant: str,
    username: str,
    name: str,
    task: dict,
    schema: dict,
    privacy: dict,
    dataset: str,
) -> str:
    """A draft federation owned by ``tenant``, whose own seat (member 1) is bound to
    ``dataset`` already; returns its id. Platform work (it lists ``tenant``): the handler
    has checked that the caller is an admin of ``tenant``."""
    fed_id = uuid.uuid4().hex[:16]
    now = utcnow()
    with rls.platform(), session_scope(db_url) as s:
        s.add(
            Federation(
                id=fed_id,
                tenant=tenant,
                name=name,
                created_by=username,
                status=DRAFT,
                task=task,
                schema=schema,
                privacy=privacy,
                rounds=int(task["rounds"]),
                rounds_done=0,
                cancel_requested=False,
                created_at=now,
            )
        )
        s.flush()
        _seat(s, fed_id, tenant, 1, username, now, dataset=dataset)
    return fed_id


def _seat(
    s: Session,
    fed_id: str,
    tenant: str,
    member_id: int,
    username: str,
    now: datetime,
    *,
    dataset: str | None,
) -> None:
    """List ``tenant`` for the federation and give it seat ``member_id``: invited by
    ``username``, or (``dataset`` given: the owner's own seat) joined with it bound."""
    s.add(FederationTenant(federation_id=fed_id, tenant=tenant))
    s.flush()
    answer = {} if dataset is None else {"responded_by": username, "responded_at": now}
    state = INVITED if dataset is None else JOINED
    s.add(FederationMember(federation_id=fed_id, tenant=tenant, member_id=member_id,
                           state=state, dataset=dataset, invited_by=username, invited_at=now,
                           **answer))  # fmt: skip


def load(db_url: str, fed_id: str) -> tuple[Federation | None, list[FederationMember]]:
    """The federation and its members as the current scope sees them (RLS on PostgreSQL)."""
    with session_scope(db_url) as s:
        fed = s.get(Federation, fed_id)
        if fed is None:
            return None, []
        members = list(
            s.scalars(
                select(FederationMember)
                .where(FederationMember.federation_id == fed_id)
                .order_by(FederationMember.member_id)
            )
        )
        s.expunge_all()
    return fed, members


def listed(db_url: str, tenant: str | None) -> list[dict[str, Any]]:
    """The federations ``tenant`` is listed for (None: every one), newest first, with
    each one's members as that tenant may see them."""
    with session_scope(db_url) as s:
        q = select(Federation).order_by(Federation.created_at.desc(), Federation.id.desc())
        if tenant is not None:
            q = q.where(
                Federation.id.in_(
                    select(FederationTenant.federation_id).where(FederationTenant.tenant == tenant)
                )
            )
        feds = list(s.scalars(q))
        ids = [f.id for f in feds]
        by_fed: dict[str, list[dict]] = {i: [] for i in ids}
        if ids:
            for m in s.scalars(
                select(FederationMember)
                .where(FederationMember.federation_id.in_(ids))
                .order_by(FederationMember.member_id)
            ):
                by_fed[m.federation_id].append(m.to_json(tenant))
        return [f.to_json(by_fed[f.id]) for f in feds]


def invite(db_url: str, fed_id: str, invitee: str, username: str) -> int:
    """List ``invitee`` as an invited member; returns its member id.

    Platform work, like every listing (see the module doc); the handler has checked
    that the caller is an admin of the federation's owner.
    """
    now = utcnow()
    with rls.platform(), session_scope(db_url) as s:
        fed = s.get(Federation, fed_id)
        tenant_lock(s, fed.tenant)  # member ids are handed out one at a time
        if fed.status != DRAFT:
            raise Conflict(f"federation {fed_id} is {fed.status}; invite before it runs")
        existing = s.scalar(
            select(FederationMember.state).where(
                FederationMember.federation_id == fed_id, FederationMember.tenant == invitee
            )
        )
        if existing is not None:
            raise Conflict(f"organisation {invitee} is already {existing} in federation {fed_id}")
        member_id = 1 + s.scalar(
            select(func.coalesce(func.max(FederationMember.member_id), 0)).where(
                FederationMember.federation_id == fed_id
            )
        )
        _seat(s, fed_id, invitee, member_id, username, now, dataset=None)
    return member_id


def respond(db_url: str, fed_id: str, tenant: str, username: str, *, dataset: str | None) -> None:
    """``tenant`` joins (``dataset`` bound) or declines (``dataset`` None)."""
    state = JOINED if dataset is not None else DECLINED
    with session_scope(db_url) as s:
        status = s.scalar(select(Federation.status).where(Federation.id == fed_id))
        if status != DRAFT:
            raise Conflict(f"federation {fed_id} is {status}; it no longer takes answers")
        changed = s.execute(
            update(FederationMember)
            .where(
                FederationMember.federation_id == fed_id,
                FederationMember.tenant == tenant,
                FederationMember.state == INVITED,
            )
            .values(state=state, dataset=dataset, responded_by=username, responded_at=utcnow())
        ).rowcount
        if not changed:
            now = s.scalar(
                select(FederationMember.state).where(
                    FederationMember.federation_id == fed_id, FederationMember.tenant == tenant
                )
            )
            if now is None:
                raise NotFound("no such federation")
            raise Conflict(f"organisation {tenant} has already {now} federation {fed_id}")


def start(db_url: str, fed_id: str, username: str) -> list[str]:
    """``draft`` → ``running``; returns the tenants that take part (joined members)."""
    with session_scope(db_url) as s:
        joined = list(
            s.scalars(
                select(FederationMember.tenant)
                .where(FederationMember.federation_id == fed_id, FederationMember.state == JOINED)
                .order_by(FederationMember.member_id)
            )
        )
        if len(joined) < MIN_MEMBERS:
            raise Conflict(
                f"federation {fed_id} needs at least {MIN_MEMBERS} members that joined with a"
                f" dataset; it has {len(joined)} ({', '.join(joined) or 'none'})"
            )
        changed = s.execute(
            update(Federation)
            .where(Federation.id == fed_id, Federation.status == DRAFT)
            .values(status=RUNNING, run_by=username, started_at=utcnow())
        ).rowcount
        if not changed:
            status = s.scalar(select(Federation.status).where(Federation.id == fed_id))
            raise Conflict(f"federation {fed_id} is already {status}")
    return joined


def request_cancel(db_url: str, fed_id: str) -> str:
    """Cancel a draft now, or ask a running federation to stop after its round; returns
    the status it has afterwards."""
    with session_scope(db_url) as s:
        fed = s.get(Federation, fed_id)
        if fed.status in ENDED:
            raise Conflict(f"federation {fed_id} is already {fed.status}")
        if fed.status == DRAFT:
            fed.status = CANCELLED
            fed.finished_at = utcnow()
        fed.cancel_requested = True
        return fed.status


def member_tenants(db_url: str, fed_id: str, *, joined_only: bool = False) -> list[str]:
    """The tenants whose chains a federation's events go to: every member that has not
    declined (or only those that joined), in member order."""
    states = (JOINED,) if joined_only else (JOINED, INVITED)
    with session_scope(db_url) as s:
        return list(
            s.scalars(
                select(FederationMember.tenant)
                .where(
                    FederationMember.federation_id == fed_id,
                    FederationMember.state.in_(states),
                )
                .order_by(FederationMember.member_id)
            )
        )


def running_federations(session, tenant: str) -> int:
    """How many running federations ``tenant`` takes part in (joined): each counts as one
    of its concurrent experiments (:func:`..quota.usage`)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Federation)
            .join(FederationMember, FederationMember.federation_id == Federation.id)
            .where(
                Federation.status == RUNNING,
                FederationMember.tenant == tenant,
                FederationMember.state == JOINED,
            )
        )
    )
