"""What the federations API takes and returns, for its OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .spec import CreateBody

Status = Literal["draft", "running", "finished", "failed", "cancelled", "stopped_budget"]
MemberState = Literal["invited", "joined", "declined"]

CreateRequest = CreateBody


class InviteRequest(BaseModel):
    tenant: str = Field(description="the slug of the organisation to invite")


class JoinRequest(BaseModel):
    dataset: str = Field(description="one of my tenant's datasets: name, name@version")
    tenant: str | None = Field(None, description="platform admins: the tenant that joins")


class Member(BaseModel):
    tenant: str
    member_id: int
    state: MemberState
    invited_at: str | None
    responded_at: str | None
    dataset: str | None = Field(None, description="shown to the member itself only")


class FederationModel(BaseModel):
    id: str
    name: str
    owner: str
    created_by: str
    status: Status
    task: dict[str, Any]
    schema_: dict[str, Any] = Field(alias="schema")
    privacy: dict[str, Any]
    rounds: int
    rounds_done: int
    epsilon: float | None
    cancel_requested: bool
    error: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    members: list[Member] = Field(default_factory=list)


class FederationPage(BaseModel):
    federations: list[FederationModel]
    next: str | None
    next_cursor: str | None


class RoundsPage(BaseModel):
    federation: str
    status: Status
    epsilon: float | None
    rounds: list[dict[str, Any]] = Field(
        description="round, members, dropped, epsilon, aggregate {accuracy, loss, examples}"
    )


class MetricsPage(BaseModel):
    federation: str
    tenant: str | None
    rounds: list[dict[str, Any]] = Field(
        default_factory=list, description="my tenant's accuracy, loss, client_seconds, examples"
    )
    local_only: dict[str, Any] | None = None
    members: dict[str, Any] | None = Field(None, description="platform admins: every member's")
