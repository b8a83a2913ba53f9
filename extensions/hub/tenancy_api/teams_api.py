"""Teams inside a tenant through the hub's API (docs/organisations.md, "Teams").

    GET    /hub/api/fedhub/tenants/<slug>/teams                        the tenant's teams
    POST   /hub/api/fedhub/tenants/<slug>/teams                        {name, lead?, quotas?} -> 201
    GET    /hub/api/fedhub/tenants/<slug>/teams/<name>                 one team
    PATCH  /hub/api/fedhub/tenants/<slug>/teams/<name>                 {lead?, quotas?}
    DELETE /hub/api/fedhub/tenants/<slug>/teams/<name>                 -> 204
    PUT    /hub/api/fedhub/tenants/<slug>/teams/<name>/members/<user>  add a member
    DELETE /hub/api/fedhub/tenants/<slug>/teams/<name>/members/<user>  -> 204
    GET    /hub/api/fedhub/tenants/<slug>/teams/<name>/usage           usage against the quotas

The tenant's members read (``custom:fedhub:tenant:read``); its tenant admins and platform
admins create, change and delete teams (``custom:fedhub:tenant:admin``); a team's lead
may also add and remove that team's members. Anyone outside the tenant is answered 404,
as for a tenant that does not exist (:meth:`FedhubAPIHandler.caller`). Every change is an
audit event (``team.created``, ``team.updated``, ``team.deleted``, ``team.member_added``,
``team.member_removed``), is mirrored into the hub group ``team-<slug>-<name>`` at once,
and keeps the team's folder and Unix group (:mod:`fedhub.tenancy.team_folders`).

Process owner: the hub (root on the embedded default: it runs ``groupadd``/``gpasswd``
for the team's group, off the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from jupyterhub import orm
from sqlalchemy.orm import Session

from fedhub import accounts, metering
from fedhub.billing.invoices import by_team
from fedhub.billing.periods import containing
from fedhub.billing.rating import rate
from fedhub.billing.settings import BillingSettings
from fedhub.db import rls
from fedhub.db.base import utcnow
from fedhub.errors import Conflict, Forbidden, InvalidRequest
from fedhub.extensions.hub.api import ADMIN_ROLES, FedhubAPIHandler
from fedhub.quotas import team_servers
from fedhub.tenancy import team_folders, teams
from fedhub.tenancy.store import UserInfo

BASE = r"/api/fedhub/tenants/([^/]+)/teams"
TEAM = BASE + r"/([^/]+)"


class _TeamsAPI(FedhubAPIHandler):
    def initialize(self, folders: team_folders.TeamFolders, currency: str):
        self.folders = folders
        self.currency = currency  # c.BillingSettings.currency: what prices are in

    def answer(self, data: dict, status: int = 200) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_status(status)
        self.finish(data)

    @contextmanager
    def session(self, slug: str) -> Iterator[Session]:
        """A transaction in ``slug``'s row-level security scope."""
        with rls.tenant(slug), self.store.session() as s:
            yield s

    async def after_change(
        self, view: teams.TeamView, removed: bool = False, created: bool = False
    ) -> None:
        """Mirror the change into the hub's groups now and keep the team's folder.

        A new team never inherits a folder or group left under its name (a deleted tenant
        of the same slug had a team of that name): they are set aside first."""
        self.authenticator.mirror.sync()
        try:
            if removed or created:
                await asyncio.to_thread(self.folders.remove, view.tenant, view.name)
            if not removed:
                await asyncio.to_thread(self.folders.sync, view.tenant, view.name, view.members)
        except (accounts.AccountError, OSError) as e:
            # the team is changed; its folder catches up at the next change or spawn
            self.log.error("team folder of %s/%s not updated: %s", view.tenant, view.name, e)

    def check_fields(self, body: dict, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise InvalidRequest(
                f"unknown field(s) {', '.join(unknown)}; expected {', '.join(allowed)}"
            )


class TeamsHandler(_TeamsAPI):
    def get(self, slug: str):
        self.caller(slug, "tenant:read")
        with self.session(slug) as s:
            found = teams.list_teams(s, slug)
        self.answer({"teams": [t.to_json() for t in found]})

    async def post(self, slug: str):
        info = self.caller(slug, "tenant:admin")
        body = self.body()
        self.check_fields(body, ("name", "lead", "quotas"))
        name = teams.validate_name(body.get("name"))
        # team-<slug>-<name> can read the same for another tenant's team ("a-b" + "c" and
        # "a" + "b-c") or be a group the operator made: the name is then taken
        group = orm.Group.find(self.db, teams.group_name(slug, name))
        props = (group.properties or {}) if group is not None else {}
        if group is not None and (props.get("fedhub_tenant"), props.get("fedhub_team")) != (
            slug,
            name,
        ):
            raise Conflict(f"the hub already has a group {group.name}; choose another team name")
        with self.session(slug) as s:
            view = teams.create_team(
                s,
                slug,
                name,
                self.store.tiers,
                lead=body.get("lead"),
                quotas=body.get("quotas"),
                actor=info.username,
            )
        self.audit("team.created", slug, info, view.to_json(), target=f"{slug}/{name}")
        await self.after_change(view, created=True)
        self.answer(view.to_json(), 201)


class TeamHandler(_TeamsAPI):
    def get(self, slug: str, name: str):
        self.caller(slug, "tenant:read")
        with self.session(slug) as s:
            view = teams.get_team(s, slug, name)
        self.answer(view.to_json())

    async def patch(self, slug: str, name: str):
        info = self.caller(slug, "tenant:admin")
        body = self.body()
        self.check_fields(body, ("lead", "quotas"))
        changes = {k: body[k] for k in ("lead", "quotas") if k in body}
        with self.session(slug) as s:
            view = teams.update_team(s, slug, name, self.store.tiers, **changes)
        self.audit("team.updated", slug, info, changes, target=f"{slug}/{name}")
        await self.after_change(view)
        self.answer(view.to_json())

    async def delete(self, slug: str, name: str):
        info = self.caller(slug, "tenant:admin")
        with self.session(slug) as s:
            view = teams.delete_team(s, slug, name)
        self.audit("team.deleted", slug, info, view.to_json(), target=f"{slug}/{name}")
        await self.after_change(view, removed=True)
        self.set_status(204)
        self.finish()


class TeamMemberHandler(_TeamsAPI):
    def lead_or_admin(self, slug: str, name: str) -> UserInfo:
        """A tenant admin, a platform admin, or this team's lead (403 for other members)."""
        info = self.caller(slug, "tenant:read")
        if info.role in ADMIN_ROLES:
            return self.caller(slug, "tenant:admin")  # and a token that may administer
        with self.session(slug) as s:
            lead = teams.get_team(s, slug, name).lead
        if lead != info.username:
            raise Forbidden(
                f"only a tenant admin or the lead of team {name} may change its members"
            )
        return info

    async def put(self, slug: str, name: str, username: str):
        info = self.lead_or_admin(slug, name)
        with self.session(slug) as s:
            view = teams.add_member(s, slug, name, username)
        self.audit(
            "team.member_added", slug, info, {"team": name, "user": username}, target=username
        )
        await self.after_change(view)
        self.answer(view.to_json())

    async def delete(self, slug: str, name: str, username: str):
        info = self.lead_or_admin(slug, name)
        with self.session(slug) as s:
            view = teams.remove_member(s, slug, name, username)
        self.audit(
            "team.member_removed", slug, info, {"team": name, "user": username}, target=username
        )
        await self.after_change(view)
        self.set_status(204)
        self.finish()


class TeamUsageHandler(_TeamsAPI):
    """What the console shows: the team's usage now and this month against its quotas."""

    def get(self, slug: str, name: str):
        self.caller(slug, "tenant:read")
        with self.session(slug) as s:
            view = teams.get_team(s, slug, name)
            members = view.members
            usage = team_usage(s, slug, members)
            cost = month_to_date_cost(s, slug, name, members, self.store.tiers, self.currency)
        start, _ = metering.month_bounds()
        self.answer(
            {
                "tenant": slug,
                "team": name,
                "members": members,
                "quotas": view.quotas,
                "usage": usage,
                "cost_this_month": cost,
                "month_start": start.isoformat() + "Z",
            }
        )


def team_usage(s: Session, slug: str, members: list[str]) -> dict:
    """A team's usage now and this month, in its quotas' terms (also the console's)."""
    return {
        "servers": team_servers(s, slug, members),
        "compute_hours": round(teams.compute_hours_used(s, slug, members), 6),
        "experiments": teams.concurrent_experiments(s, slug, members),
        "experiments_this_month": teams.experiments_this_month(s, slug, members),
    }


def rating_lines(rating) -> list[dict]:
    """A rating's lines in the shape :func:`fedhub.billing.invoices.by_team` reads."""
    return [
        {"type": ln.line_type, "meter": ln.meter, "attribution": ln.attribution}
        for ln in rating.lines
    ]


def month_to_date_cost(s, slug: str, name: str, members: list[str], catalog, currency: str) -> dict:
    """The team's share of the tenant's month so far, as billing rates it (the draft the
    invoice's ``by_team`` will show): the members' attributed amounts."""
    now = utcnow()
    rating = rate(s, slug, containing(now), catalog, until=now)
    share = by_team(rating_lines(rating), dict.fromkeys(members, name)).get(name)
    return {"amount": share["amount"] if share else "0", "currency": currency}


def handlers(authenticator) -> list[tuple]:
    folders = team_folders.TeamFolders(parent=authenticator)
    kwargs = {"folders": folders, "currency": BillingSettings(parent=authenticator).currency}
    return [
        (BASE, TeamsHandler, kwargs),
        (TEAM + r"/members/([^/]+)", TeamMemberHandler, kwargs),
        (TEAM + r"/usage", TeamUsageHandler, kwargs),
        (TEAM, TeamHandler, kwargs),
    ]
