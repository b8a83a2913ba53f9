"""REST API of federations (under ``/services/experiments/api/v1/``).

    POST /federations                    create (tenant admins), the creator's dataset bound
    GET  /federations                    those my tenant owns, is a member of or is invited to
    GET  /federations/{id}               the federation and its members
    POST /federations/{id}/invitations   {tenant}: invite another tenant (the owner's admins)
    POST /federations/{id}/join          {dataset}: accept, binding a dataset (invitee's admins)
    POST /federations/{id}/decline       decline (invitee's admins)
    POST /federations/{id}/run           start (the owner's admins; >= 2 members joined)
    POST /federations/{id}/cancel        stop after the round in flight (admins of a member)
    GET  /federations/{id}/rounds        aggregate record per round, ε included (members)
    GET  /federations/{id}/metrics       my tenant's own evaluation per round (members)
    GET  /federations/{id}/model         final weights as .npz (members)

A tenant a federation does not list gets 404 on every one of these, whatever its role, as
if the federation did not exist. Listed tenants read with ``experiments:read``; changes
need ``experiments:run`` and the tenant-admin role (or a platform admin's). Platform admins
act for a tenant by naming it (``"tenant"`` in the body).
"""

from __future__ import annotations

from fedhub.addresses import client_ip
from fedhub.errors import Forbidden, InvalidRequest, NotFound
from fedhub.jobs import run_blocking
from fedhub.openapi import operation
from fedhub.tenancy.models import Role, TenantStatus

from ..handlers import BaseHandler
from . import audit, lifecycle, results
from .api_models import (
    CreateRequest,
    FederationModel,
    FederationPage,
    InviteRequest,
    JoinRequest,
    MetricsPage,
    RoundsPage,
)
from .models import JOINED, Federation
from .spec import parse_create

NOT_FOUND = "no such federation"


class FederationBase(BaseHandler):
    @property
    def runner(self):
        return self.settings["fedhub_federations"]

    def client_info(self) -> dict:
        return {
            "source_ip": client_ip(self.request),
            "user_agent": self.request.headers.get("User-Agent"),
        }

    def acting_tenant(self, body: dict | None = None) -> str:
        """The tenant the caller acts for: their own, or the one a platform admin names."""
        caller = self.caller
        if caller.is_platform_admin:
            slug = (body or {}).get("tenant")
            if not isinstance(slug, str) or not slug:
                raise InvalidRequest('platform admins name the tenant they act for: "tenant"')
            tenant = self.store.get_tenant(slug)  # 404 if unknown
            return tenant.slug
        return caller.tenant

    def require_admin(self) -> None:
        """Changes are for tenant admins (and platform admins), after ``experiments:run``."""
        caller = self.require("experiments:run")
        if not caller.is_platform_admin and caller.role != Role.TENANT_ADMIN:
            self.deny(
                "permission",
                f"only tenant admins change federations; your role is {caller.role}",
            )

    async def visible(self, fed_id: str):
        """(federation, members) if the caller's tenant is listed for it; else 404 (the
        same body as a missing id: neither existence nor owner leaks)."""
        self.require("experiments:read")
        fed, members = await run_blocking(lifecycle.load, self.db_url, fed_id)
        tenant = self.caller.tenant
        listed = fed is not None and (
            self.caller.is_platform_admin
            or fed.tenant == tenant
            or any(m.tenant == tenant for m in members)
        )
        if fed is None:
            raise NotFound(NOT_FOUND)
        if not listed:
            self.deny("cross_tenant", NOT_FOUND, status=404)
        return fed, members

    def member_of(self, fed: Federation, members, tenant: str | None) -> bool:
        return self.caller.is_platform_admin or any(
            m.tenant == tenant and m.state == JOINED for m in members
        )

    def body(self) -> dict:
        body = self.get_json_body()
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        return body

    def render(self, fed: Federation, members) -> dict:
        viewer = None if self.caller.is_platform_admin else self.caller.tenant
        return fed.to_json([m.to_json(viewer) for m in members])

    async def write_federation(self, fed_id: str, status: int = 200) -> None:
        fed, members = await run_blocking(lifecycle.load, self.db_url, fed_id)
        self.write_json(self.render(fed, members), status=status)


class FederationsHandler(FederationBase):
    @operation(
        "Federations my tenant owns, joined or is invited to", responses={200: FederationPage}
    )
    async def get(self):
        self.require("experiments:read")
        tenant = None if self.caller.is_platform_admin else self.caller.tenant
        feds = await run_blocking(lifecycle.listed, self.db_url, tenant)
        self.write_json({"federations": feds, "next": None, "next_cursor": None})

    @operation(
        "Create a federation (tenant admins)", body=CreateRequest, responses={201: FederationModel}
    )
    async def post(self):
        self.require_admin()
        raw = self.body()
        spec = parse_create(raw)
        tenant = self.acting_tenant(raw)
        if self.store.get_tenant(tenant).status == TenantStatus.SUSPENDED:
            raise Forbidden(f"organisation {tenant} is suspended")
        binding, schema = await run_blocking(
            results.bind_dataset, tenant, spec.dataset, spec.schema_
        )
        fed_id = await run_blocking(
            lambda: lifecycle.create(
                self.db_url,
                tenant=tenant,
                username=self.caller.name,
                name=spec.name,
                task=spec.task.model_dump(),
                schema=schema,
                privacy=spec.privacy.model_dump(),
                dataset=binding,
            )
        )
        info = self.client_info()
        details = {"name": spec.name, "model": spec.task.model, "rounds": spec.task.rounds,
                   "secure_aggregation": spec.privacy.secure_aggregation,
                   "dp": spec.privacy.dp is not None}  # fmt: skip
        audit.emit("federation.created", fed_id, [tenant], by=tenant, actor=self.caller.name,
                   details=details, **info)  # fmt: skip
        audit.emit("federation.dataset_bound", fed_id, [tenant], by=tenant,
                   actor=self.caller.name, details={"member": tenant}, **info)  # fmt: skip
        await self.write_federation(fed_id, status=201)


class FederationHandler(FederationBase):
    @operation("A federation and its members", responses={200: FederationModel})
    async def get(self, fed_id: str):
        fed, members = await self.visible(fed_id)
        self.write_json(self.render(fed, members))


class InvitationsHandler(FederationBase):
    @operation("Invite another tenant (the owner's admins)", body=InviteRequest,
               responses={201: FederationModel})  # fmt: skip
    async def post(self, fed_id: str):
        fed, members = await self.visible(fed_id)
        self.require_admin()
        if not self.caller.is_platform_admin and fed.tenant != self.caller.tenant:
            self.deny("permission", "only the federation's owner invites")
        invitee = self.body().get("tenant")
        if not isinstance(invitee, str) or not invitee:
            raise InvalidRequest("tenant: the slug of the organisation to invite")
        self.store.get_tenant(invitee)  # 404 "no tenant ..." for an unknown one
        await run_blocking(lifecycle.invite, self.db_url, fed_id, invitee, self.caller.name)
        audit.emit("federation.invited", fed_id, [fed.tenant, invitee], by=fed.tenant,
                   actor=self.caller.name, details={"invitee": invitee},
                   **self.client_info())  # fmt: skip
        await self.write_federation(fed_id, status=201)


class RespondHandler(FederationBase):
    """``join`` (with a dataset) or ``decline``: the invited tenant's answer."""

    async def answer(self, fed_id: str, join: bool):
        fed, members = await self.visible(fed_id)
        self.require_admin()
        raw = self.body()
        tenant = self.acting_tenant(raw)
        binding = None
        if join:
            dataset = raw.get("dataset")
            if not isinstance(dataset, str) or not dataset:
                raise InvalidRequest("dataset: one of your tenant's datasets (name@version)")
            binding, _ = await run_blocking(results.bind_dataset, tenant, dataset, fed.schema)
        await run_blocking(
            lambda: lifecycle.respond(
                self.db_url, fed_id, tenant, self.caller.name, dataset=binding
            )
        )
        parties = await run_blocking(lifecycle.member_tenants, self.db_url, fed_id)
        info = self.client_info()
        if join:
            audit.emit("federation.joined", fed_id, parties, by=tenant, actor=self.caller.name,
                       details={"member": tenant}, **info)  # fmt: skip
            audit.emit("federation.dataset_bound", fed_id, parties, by=tenant,
                       actor=self.caller.name, details={"member": tenant}, **info)  # fmt: skip
        else:
            audit.emit("federation.declined", fed_id, [*parties, tenant], by=tenant,
                       actor=self.caller.name, details={"member": tenant}, **info)  # fmt: skip
        await self.write_federation(fed_id)


class JoinHandler(RespondHandler):
    @operation("Join, binding one of my tenant's datasets", body=JoinRequest,
               responses={200: FederationModel})  # fmt: skip
    async def post(self, fed_id: str):
        await self.answer(fed_id, join=True)


class DeclineHandler(RespondHandler):
    @operation("Decline the invitation", responses={200: FederationModel})
    async def post(self, fed_id: str):
        await self.answer(fed_id, join=False)


class RunHandler(FederationBase):
    @operation("Start training (the owner's admins)", responses={202: FederationModel})
    async def post(self, fed_id: str):
        fed, members = await self.visible(fed_id)
        self.require_admin()
        if not self.caller.is_platform_admin and fed.tenant != self.caller.tenant:
            self.deny("permission", "only the federation's owner starts it")
        joined = [m.tenant for m in members if m.state == JOINED]
        for tenant in joined:
            if self.store.get_tenant(tenant).status == TenantStatus.SUSPENDED:
                raise Forbidden(f"member {tenant} is suspended; the federation cannot run")
        await run_blocking(self.runner.check_members, fed_id, joined)
        tenants = await run_blocking(lifecycle.start, self.db_url, fed_id, self.caller.name)
        audit.emit("federation.started", fed_id, tenants, by=fed.tenant, actor=self.caller.name,
                   details={"members": tenants}, **self.client_info())  # fmt: skip
        self.runner.submit(fed_id)
        await self.write_federation(fed_id, status=202)


class CancelHandler(FederationBase):
    @operation(
        "Stop after the round in flight (a member's admins)", responses={202: FederationModel}
    )
    async def post(self, fed_id: str):
        fed, members = await self.visible(fed_id)
        self.require_admin()
        if not self.member_of(fed, members, self.caller.tenant):
            self.deny("permission", "only the admins of a member that joined cancel it")
        await run_blocking(lifecycle.request_cancel, self.db_url, fed_id)
        self.runner.request_cancel(fed_id)
        by = self.caller.tenant or fed.tenant
        tenants = [m.tenant for m in members if m.state == JOINED]
        audit.emit("federation.cancel_requested", fed_id, tenants, by=by,
                   actor=self.caller.name, **self.client_info())  # fmt: skip
        await self.write_federation(fed_id, status=202)


class MemberReadHandler(FederationBase):
    async def member_federation(self, fed_id: str):
        fed, members = await self.visible(fed_id)
        if not self.member_of(fed, members, self.caller.tenant):
            self.deny("not_a_member", "only the federation's members read its results")
        return fed, members


class RoundsHandler(MemberReadHandler):
    @operation("Aggregate metrics and ε per round (members)", responses={200: RoundsPage})
    async def get(self, fed_id: str):
        fed, _ = await self.member_federation(fed_id)
        rounds = await run_blocking(results.rounds, self.db_url, fed_id)
        self.write_json({"federation": fed_id, "status": fed.status, "epsilon": fed.epsilon,
                         "rounds": rounds})  # fmt: skip


class MetricsHandler(MemberReadHandler):
    @operation("My tenant's own evaluation per round (members)", responses={200: MetricsPage})
    async def get(self, fed_id: str):
        await self.member_federation(fed_id)
        tenant = self.caller.tenant if not self.caller.is_platform_admin else None
        rows = await run_blocking(results.member_metrics, self.db_url, fed_id, tenant)
        self.write_json({"federation": fed_id, "tenant": tenant, **rows})


class ModelHandler(MemberReadHandler):
    @operation("The final global weights, .npz with key 'weights' (members)",
               responses={200: {"application/octet-stream": None}})  # fmt: skip
    async def get(self, fed_id: str):
        fed, _ = await self.member_federation(fed_id)
        path = self.runner.model_path(fed_id)
        if not path.exists():
            raise NotFound(f"federation {fed_id} has no final model ({fed.status})")
        data = await run_blocking(path.read_bytes)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="federation-{fed_id}.npz"')
        self.finish(data)


def handlers() -> list[tuple]:
    fed = r"api/v1/federations/([0-9a-f]{1,32})"
    return [
        ("api/v1/federations", FederationsHandler),
        (fed, FederationHandler),
        (fed + "/invitations", InvitationsHandler),
        (fed + "/join", JoinHandler),
        (fed + "/decline", DeclineHandler),
        (fed + "/run", RunHandler),
        (fed + "/cancel", CancelHandler),
        (fed + "/rounds", RoundsHandler),
        (fed + "/metrics", MetricsHandler),
        (fed + "/model", ModelHandler),
    ]
